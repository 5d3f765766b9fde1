import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { credentials, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { serveAddresses } from "../state/support.js";
import { ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import { EnvoyRoleClient } from "../../ext-service/src/envoy/envoy-role-client.js";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import type { CheckRequest, CheckResponse } from "../../ext-service/src/envoy/types.js";
import { GATEWAY_YAML, MCP_POST_HEADERS, REGISTRY_YAML } from "./harness.js";

// `mcp-gateway serve` as compose runs it: gRPC on mutual TLS with the certificates of
// envoy/gen-certs.sh (review F8), and on SIGTERM NOT_SERVING first while still answering new
// calls for drainDelay, then draining (review R5). Real gRPC clients over real TLS.

const ROOT = join(import.meta.dirname, "..", "..");
const DRAIN_DELAY_MS = 2500;

const dir = mkdtempSync(join(tmpdir(), "mcp-gateway-mtls-"));
const certs = join(dir, "certs");
const otherCerts = join(dir, "other-certs");
const pem = (base: string, name: string) => readFileSync(join(base, name));
let child: ChildProcess | undefined;
let stdout = "";
let grpcPort = 0;
let adminPort = 0;
let token = "";

type Unary<Req, Res> = (req: Req, opts: object, cb: (err: ServiceError | null, res?: Res) => void) => void;
interface Clients {
  health: Unary<{ service: string }, { status: string }>;
  check: Unary<CheckRequest, CheckResponse>;
  close(): void;
}

/** Health and Authorization clients on one TLS channel, verifying the server as `ext-service`. */
function clients(creds: ChannelCredentials): Clients {
  const protos = envoyProtos();
  const options = { "grpc.ssl_target_name_override": "ext-service", "grpc.default_authority": "ext-service" };
  const address = `127.0.0.1:${grpcPort}`;
  const health = new protos.Health(address, creds, options) as unknown as {
    Check: Clients["health"];
    close(): void;
  };
  const authz = new protos.Authorization(address, creds, options) as unknown as {
    Check: Clients["check"];
    close(): void;
  };
  return {
    health: health.Check.bind(health),
    check: authz.Check.bind(authz),
    close() {
      health.close();
      authz.close();
    },
  };
}

function call<Req, Res>(fn: Unary<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn(req, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

const envoyCreds = () =>
  credentials.createSsl(pem(certs, "ca.crt"), pem(certs, "envoy-client.key"), pem(certs, "envoy-client.crt"));

function checkRequest(): CheckRequest {
  const shaper = new EnvoyRoleClient("127.0.0.1:9");
  const headers = { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` };
  const request = shaper.checkRequest({ method: "POST", path: "/mcp/tickets", headers }, headers);
  shaper.close();
  return request;
}

beforeAll(async () => {
  const gen = join(ROOT, "envoy", "gen-certs.sh");
  await promisify(execFile)("bash", [gen], { env: { ...process.env, MCP_GATEWAY_CERTS_DIR: certs } });
  await promisify(execFile)("bash", [gen], { env: { ...process.env, MCP_GATEWAY_CERTS_DIR: otherCerts } });
  const keys = await ensureDevKeys(join(dir, "keys"));
  token = await signDevToken(keys.privateJwk, { subject: "support-bot" });
  writeFileSync(
    join(dir, "gateway.yaml"),
    GATEWAY_YAML.replace("drainDelay: 200ms", `drainDelay: ${DRAIN_DELAY_MS}ms`).replace(
      "logLevel: debug",
      [
        "logLevel: info",
        "listen:",
        "  grpc:",
        "    host: 127.0.0.1",
        "    port: 0",
        "    tls: { cert: certs/ext-service.crt, key: certs/ext-service.key, clientCa: certs/ca.crt }",
        "  admin: { host: 127.0.0.1, port: 0 }",
      ].join("\n"),
    ),
  );
  writeFileSync(join(dir, "registry.yaml"), REGISTRY_YAML);
  const proc = spawn(
    process.execPath,
    ["--import", "tsx", "ext-service/src/cli.ts", "serve", "--config", join(dir, "gateway.yaml")],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  child = proc;
  proc.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (stdout += d.toString()));
  const started = await vi.waitFor(
    () => {
      const found = serveAddresses(stdout);
      if (!found) throw new Error(`no start line yet:\n${stdout}`);
      return found;
    },
    { timeout: 30_000, interval: 50 },
  );
  expect(stdout).toMatch(/health, mutual TLS\) on 127\.0\.0\.1:\d+/);
  ({ grpcPort, adminPort } = started);
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill("SIGKILL");
    await once(child, "exit");
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("serve with listen.grpc.tls (mutual TLS, review F8)", () => {
  it("answers a client presenting Envoy's certificate from the configured CA", async () => {
    const c = clients(envoyCreds());
    try {
      expect(await call(c.health, { service: "" })).toEqual({ status: "SERVING" });
      const res = await call(c.check, checkRequest());
      expect(res.status.code).toBe(0);
    } finally {
      c.close();
    }
  });

  it("refuses a client without a certificate, and one whose certificate another CA signed", async () => {
    const anonymous = clients(credentials.createSsl(pem(certs, "ca.crt")));
    const stranger = clients(
      credentials.createSsl(
        pem(certs, "ca.crt"),
        pem(otherCerts, "envoy-client.key"),
        pem(otherCerts, "envoy-client.crt"),
      ),
    );
    const plaintext = clients(credentials.createInsecure());
    try {
      for (const c of [anonymous, stranger, plaintext]) {
        const err = (await call(c.check, checkRequest()).then(
          () => undefined,
          (e: unknown) => e,
        )) as ServiceError | undefined;
        expect(err?.code).toBe(14); // UNAVAILABLE: no TLS session, so no call ever reached a handler
      }
    } finally {
      for (const c of [anonymous, stranger, plaintext]) c.close();
    }
  });
});

describe("serve on SIGTERM (review R5)", () => {
  it("reports NOT_SERVING at once, still answers new calls for drainDelay, then drains and exits 0", async () => {
    const c = clients(envoyCreds());
    const exited = once(child!, "exit");
    const signalledAt = Date.now();
    child!.kill("SIGTERM");
    try {
      await vi.waitFor(
        async () => expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(503),
        { timeout: 2000, interval: 25 },
      );
      expect(await call(c.health, { service: "" })).toEqual({ status: "NOT_SERVING" });
      // What Envoy does until its health checks have seen NOT_SERVING: send a new Check.
      const res = await call(c.check, checkRequest());
      expect(res.status.code).toBe(0);
      expect(Date.now() - signalledAt).toBeLessThan(DRAIN_DELAY_MS);
      expect(child!.exitCode).toBeNull();
    } finally {
      c.close();
    }
    const [code] = await exited;
    expect(code, stdout).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(DRAIN_DELAY_MS);
    expect(stdout).toContain("NOT_SERVING: still accepting calls until Envoy has seen it");
  }, 30_000);
});
