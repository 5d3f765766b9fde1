import { dirname } from "node:path";
import {
  ConfigError,
  formatProblem,
  problemAt,
  readConfigFiles,
  type ConfigProblem,
  type ConfigSource,
  type LoadedConfig,
} from "./load.js";
import { registryReferenceProblems } from "./references.js";
import type { GatewayConfig, Registry } from "./schema.js";
import { readSessionSecrets } from "../policy/session-keys.js";
import { readUpstreamCredentials } from "../policy/upstream-credentials.js";
import { ApprovalPolicy, ApprovalsConfigError } from "../policy/approvals.js";
import { PolicyEngine } from "../policy/engine.js";
import { Authenticator, ConfigurationProblem } from "../policy/identity.js";
import { Rbac, RbacConfigError } from "../policy/rbac.js";
import { SecurityConfigError } from "../policy/security.js";

/**
 * Checks that need more than the schema: roles named by agents and by the anonymous principal,
 * rule globs and CEL conditions, issuer key sources (JWKS files, secrets, algorithm choices).
 * Every problem is returned, located in gateway.yaml when its positions are known.
 */
export function crossReferenceProblems(
  config: GatewayConfig,
  configFile: string,
  source?: ConfigSource,
): ConfigProblem[] {
  const where: ConfigSource = source ?? { file: configFile, locate: () => undefined };
  const problems: ConfigProblem[] = [];
  config.auth.anonymous.roles.forEach((role, i) => {
    if (!(role in config.roles)) {
      problems.push(problemAt(where, ["auth", "anonymous", "roles", i], `unknown role '${role}'`));
    }
  });
  // A budget naming a role nobody can hold, or an issuer the gateway does not trust, would never
  // apply: a spend cap that silently caps nothing.
  const issuers = new Set(config.auth.issuers.map((i) => i.issuer));
  config.budgets.rules.forEach((rule, i) => {
    rule.roles?.forEach((role, j) => {
      if (!(role in config.roles)) {
        problems.push(problemAt(where, ["budgets", "rules", i, "roles", j], `unknown role '${role}'`));
      }
    });
    rule.issuers?.forEach((issuer, j) => {
      if (!issuers.has(issuer)) {
        problems.push(
          problemAt(where, ["budgets", "rules", i, "issuers", j], `'${issuer}' is not one of auth.issuers`),
        );
      }
    });
  });
  try {
    new Rbac(config);
  } catch (err) {
    if (!(err instanceof RbacConfigError)) throw err;
    for (const p of err.problems) problems.push(problemAt(where, p.path, p.message));
  }
  try {
    new ApprovalPolicy(config);
  } catch (err) {
    if (!(err instanceof ApprovalsConfigError)) throw err;
    for (const p of err.problems) problems.push(problemAt(where, p.path, p.message));
  }
  try {
    new Authenticator(config, dirname(configFile));
  } catch (err) {
    if (!(err instanceof ConfigurationProblem)) throw err;
    for (const p of err.problems) problems.push(problemAt(where, p.path, p.message));
  }
  for (const p of readSessionSecrets(config, dirname(configFile)).problems) {
    problems.push(problemAt(where, p.path, p.message));
  }
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

/**
 * A policy engine compiled from a whole gateway.yaml: the core decides with its PolicyConfig
 * sections; the adapters read the rest (listeners, edge, state, cache, process settings) from the
 * same engine, so one reload swaps both together.
 */
export type GatewayEngine = PolicyEngine<GatewayConfig>;

/**
 * Validate cross-references and compile: the only way adapters get a policy engine. Throws a
 * ConfigError listing every problem.
 */
export function compileEngine(loaded: LoadedConfig, now?: () => number): GatewayEngine {
  const problems = [
    ...crossReferenceProblems(loaded.config, loaded.configFile, loaded.configSource),
    ...credentialProblems(loaded.registry, loaded.configFile, loaded.registryFile, loaded.registrySource),
  ];
  if (problems.length > 0) throw new ConfigError(problems);
  return buildEngine(loaded, now);
}

/**
 * Upstream credentials that cannot be read (unset variable, missing Docker secret), located in
 * the registry. The messages name the variable or file, never a value.
 */
function credentialProblems(
  registry: Registry,
  configFile: string,
  registryFile: string,
  source: ConfigSource | undefined,
): ConfigProblem[] {
  const where: ConfigSource = source ?? { file: registryFile, locate: () => undefined };
  return readUpstreamCredentials(registry, dirname(configFile)).problems.map((p) =>
    problemAt(where, p.path, p.message),
  );
}

/**
 * Security settings and registry pins are checked while the engine compiles them: such a
 * problem becomes a ConfigError located in its file, like every other config problem.
 */
function buildEngine(loaded: LoadedConfig, now?: () => number): GatewayEngine {
  try {
    return new PolicyEngine(loaded, now);
  } catch (err) {
    if (!(err instanceof SecurityConfigError)) throw err;
    const inRegistry = err.file === "registry";
    const source = inRegistry ? loaded.registrySource : loaded.configSource;
    if (source) throw new ConfigError([problemAt(source, pathKeys(err.path), err.message)]);
    const file = inRegistry ? loaded.registryFile : loaded.configFile;
    throw new ConfigError([{ file, path: err.path, message: err.message }]);
  }
}

/** `servers[0].tools[1].pin` as keys for ConfigSource.locate. */
function pathKeys(path: string): PropertyKey[] {
  return [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] === undefined ? m[1]! : Number(m[2])));
}

/**
 * Load gateway.yaml and its registry, check everything, compile. Problems in both files and
 * in cross-references are reported together, so `validate` prints every error in one run.
 */
export function loadEngine(
  configFile: string,
  now?: () => number,
): { loaded: LoadedConfig; engine: GatewayEngine; references: ConfigProblem[] } {
  const files = readConfigFiles(configFile);
  const problems = [...files.problems];
  if (files.config) {
    problems.push(...crossReferenceProblems(files.config, files.configFile, files.configSource));
  }
  if (files.registry) {
    problems.push(
      ...credentialProblems(files.registry, files.configFile, files.registryFile, files.registrySource),
    );
  }
  if (problems.length > 0 || !files.config || !files.registry)
    throw new ConfigError(inFileOrder(problems, configFile));
  const loaded: LoadedConfig = {
    configFile: files.configFile,
    registryFile: files.registryFile,
    config: files.config,
    registry: files.registry,
    configSource: files.configSource,
    registrySource: files.registrySource,
  };
  const engine = buildEngine(loaded, now);
  return { loaded, engine, references: referenceProblems(loaded) };
}

/**
 * Rules and overrides naming servers or tools the registry lacks. `validate` and `registry lint`
 * fail on them; a running gateway only logs them, because refusing the registry would block the
 * release that removes a compromised tool while a role still names it.
 */
export function referenceProblems(loaded: LoadedConfig): ConfigProblem[] {
  const where = loaded.configSource ?? { file: loaded.configFile, locate: () => undefined };
  return registryReferenceProblems(loaded.config, loaded.registry, where);
}

/** Groups problems by file (gateway.yaml first), each file's by line and column. */
function inFileOrder(problems: ConfigProblem[], configFile: string): ConfigProblem[] {
  const files = [...new Set([configFile, ...problems.map((p) => p.file)])];
  return problems
    .map((p, i) => ({ p, i }))
    .sort(
      (a, b) =>
        files.indexOf(a.p.file) - files.indexOf(b.p.file) ||
        (a.p.line ?? 0) - (b.p.line ?? 0) ||
        (a.p.column ?? 0) - (b.p.column ?? 0) ||
        a.i - b.i,
    )
    .map(({ p }) => p);
}

/**
 * Warns at start when `sessions.keys` is empty: session ids, hop identities and resumable event
 * ids are then sealed under a key this process made up, so they die with it and another replica
 * refuses them. Fine for one process tried by hand, a surprise behind a load balancer.
 */
export function warnEphemeralSessionKeys(
  logger: { warn(fields: object, message: string): void },
  config: Pick<GatewayConfig, "sessions">,
): void {
  if (config.sessions.keys.length > 0) return;
  logger.warn(
    { setting: "sessions.keys" },
    "no sessions.keys: session ids are sealed with a key of this process only; they stop working when it restarts and other replicas refuse them (404 session_unknown). Give every replica the same keys (docs/CONFIG.md)",
  );
}

/** Logs each reference problem a running gateway tolerates (see referenceProblems). */
export function warnReferences(
  logger: { warn(fields: object, message: string): void },
  problems: readonly ConfigProblem[],
): void {
  if (problems.length === 0) return;
  logger.warn(
    { problems: problems.map(formatProblem) },
    "config names servers or tools the registry lacks: those rules match nothing ('mcp-gateway validate' fails on them)",
  );
}
