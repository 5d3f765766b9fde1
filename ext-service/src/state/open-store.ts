import type { GatewayConfig } from "../config/schema.js";
import { durationMs } from "../config/schema.js";
import { MemoryStore } from "./memory.js";
import { RedisStore, tlsOptions } from "./redis.js";
import type { StateStore } from "./store.js";

/**
 * The store gateway.yaml's `state` section describes. Secrets come from the environment (or the
 * URL's user info); TLS files are relative to `configDir`, the directory of gateway.yaml.
 */
export function openStore(
  config: GatewayConfig,
  env: NodeJS.ProcessEnv = process.env,
  configDir = process.cwd(),
): StateStore {
  const state = config.state;
  if (state.store === "memory" || !state.redis) return new MemoryStore();
  const redis = state.redis;
  const fromEnv = (name: string | undefined, what: string): string | undefined => {
    if (name === undefined) return undefined;
    const value = env[name];
    if (value === undefined || value === "") {
      throw new Error(`state.redis: the environment variable ${name} (${what}) is not set`);
    }
    return value;
  };
  return new RedisStore({
    url: redis.url,
    username: fromEnv(redis.usernameEnv, "usernameEnv"),
    password: fromEnv(redis.passwordEnv, "passwordEnv"),
    tls: redis.tls ? tlsOptions(redis.tls, configDir) : undefined,
    keyPrefix: redis.keyPrefix,
    connectTimeoutMs: durationMs(redis.connectTimeout),
    commandTimeoutMs: durationMs(redis.commandTimeout),
  });
}
