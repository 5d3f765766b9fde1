import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseGatewayConfig } from "../../ext-service/src/config/load.js";
import type { RedisStore } from "../../ext-service/src/state/redis.js";
import { openStore } from "../../ext-service/src/state/open-store.js";
import { StoreUnavailable } from "../../ext-service/src/state/store.js";
import { freePort, redisServerPath, startRedis, type TestRedis } from "./redis-server.js";

/**
 * Redis over TLS with authentication, as gateway.yaml configures it: a real redis-server with
 * --tls-port, certificates made here with openssl (a CA, the server's, a client's), an ACL user
 * and requirepass; the store opened from a `state` section (rediss:// URL with user info, or the
 * *Env variables; the CA and client certificate files relative to gateway.yaml).
 */

const openssl = spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;
/**
 * Whether redis-server was built with TLS (Debian's is: BUILD_TLS=yes). A build without it
 * refuses the tls-port directive ("Bad directive"); with it, no port at all just exits.
 */
const redisTls =
  redisServerPath !== undefined &&
  /not listen anywhere/.test(
    spawnSync(redisServerPath, ["--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"], {
      encoding: "utf8",
      timeout: 5_000,
    }).stdout ?? "",
  );
if (!openssl || !redisTls) {
  process.stderr.write(
    `\n*** Redis TLS tests SKIPPED: ${!openssl ? "openssl is not on PATH" : "redis-server was built without TLS"} ***\n\n`,
  );
}
const describeTls = openssl && redisTls ? describe : describe.skip;

function makeCertificates(dir: string): void {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "1",
    "-subj",
    "/CN=mcp-gateway test CA",
  );
  for (const [name, cn, ext] of [
    ["server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"],
    ["client", "mcp-gateway", "extendedKeyUsage=clientAuth"],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    run(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    );
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    );
  }
  // A CA nobody trusts, to show the server's certificate is checked.
  run(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "other.key",
    "-out",
    "other.crt",
    "-days",
    "1",
    "-subj",
    "/CN=someone else",
  );
}

describeTls("Redis over TLS with an ACL user (real redis-server --tls-port)", () => {
  let dir: string;
  let redis: TestRedis;
  let tlsPort: number;
  const stores: RedisStore[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mcp-gw-redis-tls-"));
    makeCertificates(dir);
    tlsPort = await freePort();
    redis = await startRedis([
      "--tls-port",
      String(tlsPort),
      "--tls-cert-file",
      join(dir, "server.crt"),
      "--tls-key-file",
      join(dir, "server.key"),
      "--tls-ca-cert-file",
      join(dir, "ca.crt"),
      "--tls-auth-clients",
      "optional",
      "--requirepass",
      "default-pass",
      "--user",
      "gateway",
      "on",
      ">gw-pass",
      "~*",
      "&*",
      "+@all",
    ]);
  }, 60_000);
  afterAll(async () => {
    for (const s of stores) await s.close();
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens the store a gateway.yaml `state` section describes (files relative to `dir`). */
  function open(state: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): RedisStore {
    const config = parseGatewayConfig(
      JSON.stringify({
        registry: "registry.yaml",
        auth: { mode: "optional" },
        state: { store: "redis", redis: { connectTimeout: "1s", keyPrefix: "tls-test:", ...state } },
      }),
    );
    const store = openStore(config, env, dir) as RedisStore;
    stores.push(store);
    return store;
  }

  async function works(store: RedisStore): Promise<void> {
    await store.waitUntilAvailable(5_000);
    const key = `k${Math.random()}`;
    expect(await store.chargeAll([{ key, amount: 2, limit: 3, ttlMs: 60_000 }])).toEqual({
      applied: true,
      values: [2],
    });
    expect((await store.chargeAll([{ key, amount: 2, limit: 3, ttlMs: 60_000 }])).applied).toBe(false);
  }

  async function refused(store: RedisStore): Promise<void> {
    await expect(store.waitUntilAvailable(1_500)).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(store.get("x")).rejects.toBeInstanceOf(StoreUnavailable);
  }

  it("connects with rediss://user:password@host:port and the CA file", async () => {
    await works(
      open({
        url: `rediss://gateway:gw-pass@127.0.0.1:${tlsPort}`,
        tls: { caFile: "ca.crt", serverName: "localhost" },
      }),
    );
  });

  it("takes the ACL user and password from the environment, and a client certificate", async () => {
    await works(
      open(
        {
          url: `rediss://127.0.0.1:${tlsPort}`,
          usernameEnv: "REDIS_USER",
          passwordEnv: "REDIS_PASSWORD",
          tls: { caFile: "ca.crt", certFile: "client.crt", keyFile: "client.key", serverName: "localhost" },
        },
        { REDIS_USER: "gateway", REDIS_PASSWORD: "gw-pass" },
      ),
    );
    // The environment wins over the URL's user info.
    await works(
      open(
        {
          url: `rediss://gateway:stale-pass@127.0.0.1:${tlsPort}`,
          passwordEnv: "REDIS_PASSWORD",
          tls: { caFile: "ca.crt", serverName: "localhost" },
        },
        { REDIS_PASSWORD: "gw-pass" },
      ),
    );
    // requirepass: the default user with its password.
    await works(
      open(
        {
          url: `rediss://127.0.0.1:${tlsPort}`,
          passwordEnv: "REDIS_PASSWORD",
          tls: { caFile: "ca.crt", serverName: "localhost" },
        },
        { REDIS_PASSWORD: "default-pass" },
      ),
    );
  });

  it("presents the client certificate to a Redis that requires one (tls-auth-clients yes)", async () => {
    const port = await freePort();
    const strict = await startRedis([
      ...["--tls-port", String(port), "--tls-auth-clients", "yes"],
      ...["--tls-cert-file", join(dir, "server.crt"), "--tls-key-file", join(dir, "server.key")],
      ...["--tls-ca-cert-file", join(dir, "ca.crt")],
    ]);
    try {
      const url = `rediss://127.0.0.1:${port}`;
      await refused(open({ url, tls: { caFile: "ca.crt", serverName: "localhost" } }));
      await works(
        open({
          url,
          tls: { caFile: "ca.crt", certFile: "client.crt", keyFile: "client.key", serverName: "localhost" },
        }),
      );
    } finally {
      for (const s of stores.splice(0)) await s.close();
      await strict.close();
    }
  });

  it("stays unavailable with a wrong password, an untrusted certificate, no password, or plain TCP", async () => {
    await refused(
      open({
        url: `rediss://gateway:wrong@127.0.0.1:${tlsPort}`,
        tls: { caFile: "ca.crt", serverName: "localhost" },
      }),
    );
    await refused(
      open({
        url: `rediss://gateway:gw-pass@127.0.0.1:${tlsPort}`,
        tls: { caFile: "other.crt", serverName: "localhost" },
      }),
    );
    await refused(
      open({ url: `rediss://127.0.0.1:${tlsPort}`, tls: { caFile: "ca.crt", serverName: "localhost" } }),
    );
    await refused(open({ url: `redis://gateway:gw-pass@127.0.0.1:${tlsPort}` }));
  });

  it("refuses to start when a named environment variable is missing", () => {
    expect(() => open({ url: `rediss://127.0.0.1:${tlsPort}`, passwordEnv: "NOT_SET" })).toThrow(
      /NOT_SET \(passwordEnv\) is not set/,
    );
  });
});
