import { loadConfig, ConfigError, type LoadedConfig } from "./load.js";
import { PolicyEngine } from "../policy/engine.js";
import { ConfigurationProblem } from "../policy/identity.js";
import { RbacConfigError } from "../policy/rbac.js";
import { SecurityConfigError } from "../policy/security.js";

/**
 * Load, validate and compile: the only way adapters get a policy engine. Cross-references
 * (roles named by agents, CEL conditions, issuer keys) are checked here, with file and path.
 */
export function compileEngine(loaded: LoadedConfig, now?: () => number): PolicyEngine {
  const { config, configFile } = loaded;
  const problems = [];
  for (const role of config.auth.anonymous.roles) {
    if (!(role in config.roles)) {
      problems.push({ file: configFile, path: "auth.anonymous.roles", message: `unknown role '${role}'` });
    }
  }
  if (problems.length) throw new ConfigError(problems);
  try {
    return new PolicyEngine(loaded, now);
  } catch (err) {
    if (err instanceof RbacConfigError) {
      throw new ConfigError([
        { file: configFile, path: err.path, message: err.message.slice(err.path.length + 2) },
      ]);
    }
    if (err instanceof SecurityConfigError) {
      const file = err.file === "registry" ? loaded.registryFile : configFile;
      throw new ConfigError([{ file, path: err.path, message: err.message }]);
    }
    if (err instanceof ConfigurationProblem) {
      throw new ConfigError([{ file: configFile, path: "auth.issuers", message: err.message }]);
    }
    if (err instanceof SyntaxError || (err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ConfigError([
        { file: configFile, path: "auth.issuers", message: `cannot load JWKS: ${(err as Error).message}` },
      ]);
    }
    throw err;
  }
}

export function loadEngine(
  configFile: string,
  now?: () => number,
): { loaded: LoadedConfig; engine: PolicyEngine } {
  const loaded = loadConfig(configFile);
  return { loaded, engine: compileEngine(loaded, now) };
}
