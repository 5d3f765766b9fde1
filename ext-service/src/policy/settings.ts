/**
 * The settings the policy core is compiled from: the parts of gateway.yaml it decides with, and
 * the registry. policy/ owns these shapes; config/ validates the files with its zod schemas and
 * hands the result to the PolicyEngine, and config/schema.ts checks at compile time that each
 * schema's output is assignable to the shape here. So policy/ never imports config/, and a schema
 * change that the core cannot read fails to compile in config/, naming the field.
 */

/** Seconds as a number, or a string such as "250ms", "30s", "5m", "2h" (model/duration.ts reads it). */
export type Duration = string | number;

export type Risk = "low" | "medium" | "high" | "critical";

// ---- registry.yaml ----

/**
 * A tool as the registry pins it. A type, not an interface, so that it stays assignable to
 * Record<string, unknown> (canonical.ts hashes a definition field by field).
 */
export type RegistryTool = {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  risk: Risk;
  /** What one call counts against a cost budget. */
  cost: number;
  title?: string | undefined;
  outputSchema?: Record<string, unknown> | undefined;
  annotations?: Record<string, unknown> | undefined;
  owner?: string | undefined;
  deprecated?: string | undefined;
  /** sha256 of the canonical definition (policy/canonical.ts). */
  pin?: string | undefined;
  cache?: { ttl: Duration; scope: "agent" | "shared" } | undefined;
};

/** `upstream.tokenExchange`: RFC 8693 exchange of the agent's token for one for this server. */
export interface TokenExchangeConfig {
  tokenEndpoint: string;
  clientId: string;
  /** An `${env:NAME}` or `${file:/path}` reference, resolved when the config is loaded. */
  clientSecret: string;
  subjectTokenType: string;
  header: string;
  refreshSkewSeconds: number;
  timeout: Duration;
  audience?: string | undefined;
  resource?: string | undefined;
  scope?: string | undefined;
}

export interface RegistryServer {
  name: string;
  upstreams: string[];
  tools: RegistryTool[];
  description?: string | undefined;
  owner?: string | undefined;
  upstream?:
    | {
        /** Header values are `${env:NAME}` or `${file:/path}` references, resolved at load. */
        headers?: Record<string, string> | undefined;
        tokenExchange?: TokenExchangeConfig | undefined;
      }
    | undefined;
}

export interface Registry {
  version: string;
  servers: RegistryServer[];
  $schema?: string | undefined;
}

// ---- gateway.yaml: identity ----

export type JwtAlgorithm =
  | "RS256"
  | "RS384"
  | "RS512"
  | "PS256"
  | "PS384"
  | "PS512"
  | "ES256"
  | "ES384"
  | "ES512"
  | "EdDSA"
  | "HS256"
  | "HS384"
  | "HS512";

export type JwksSource =
  | { uri: string; timeout: Duration; cacheMaxAge: Duration; cooldown: Duration }
  | { file: string }
  | { inline: { keys: Record<string, unknown>[] } }
  | { secretEnv: string };

export interface Issuer {
  issuer: string;
  audiences: string[];
  jwks: JwksSource;
  algorithms: JwtAlgorithm[];
  agentClaim: string;
  rolesClaim: string;
  trustTokenRoles: boolean;
}

export interface AuthConfig {
  mode: "optional" | "required";
  anonymous: { agent: string; roles: string[] };
  issuers: Issuer[];
  clockSkew: Duration;
  maxTokenLifetime: Duration;
  tokenCache: { ttl: Duration; maxEntries: number };
  authorizationServers: string[];
}

// ---- gateway.yaml: access ----

export interface Rule {
  effect: "allow" | "deny";
  tools?: string[] | undefined;
  prompts?: string[] | undefined;
  resources?: string[] | undefined;
  /** A CEL condition over the call. */
  when?: string | undefined;
  approval?: "required" | undefined;
  description?: string | undefined;
}

export interface RoleConfig {
  rules: Rule[];
  description?: string | undefined;
}

export interface AgentConfig {
  roles: string[];
  description?: string | undefined;
  issuer?: string | undefined;
}

export interface LimitsConfig {
  maxRequestBytes: number;
  maxResponseBytes: number;
  maxBatchSize: number;
  maxJsonDepth: number;
  maxSseEventBytes: number;
}

// ---- gateway.yaml: security ----

export type SecurityActionName = "block" | "redact" | "annotate" | "log";
export type ArgumentActionName = "block" | "log";

export interface DlpAllowEntry {
  detector?: string | undefined;
  values?: string[] | undefined;
  patterns?: string[] | undefined;
  description?: string | undefined;
}

interface Tiers<Action> {
  block: Action;
  alert: Action;
}

export interface SecurityOverride {
  /** Globs over server/tool. */
  match: string[];
  description?: string | undefined;
  validateArguments?: boolean | undefined;
  injection?:
    | {
        enabled?: boolean | undefined;
        descriptions?: Partial<Tiers<SecurityActionName>> | undefined;
        arguments?: Partial<Tiers<ArgumentActionName>> | undefined;
        outputs?: Partial<Tiers<SecurityActionName>> | undefined;
      }
    | undefined;
  dlp?:
    | {
        enabled?: boolean | undefined;
        arguments?:
          { secret?: ArgumentActionName | undefined; pii?: ArgumentActionName | undefined } | undefined;
        outputs?:
          { secret?: SecurityActionName | undefined; pii?: SecurityActionName | undefined } | undefined;
        allow?: DlpAllowEntry[] | undefined;
      }
    | undefined;
}

export interface ClassifierConfig {
  url: string;
  timeout: Duration;
  failMode: "open" | "closed";
  threshold: number;
  surfaces: ("descriptions" | "outputs")[];
  minChars: number;
  cache: { maxEntries: number; ttl: Duration };
  auth?: { header: string; valueEnv?: string | undefined; valueFile?: string | undefined } | undefined;
}

export interface SecurityConfig {
  pins: { enforce: boolean; verifyBeforeCall: boolean; verifiedFor: Duration; listTimeout: Duration };
  validateArguments: boolean;
  injection: {
    enabled: boolean;
    descriptions: Tiers<SecurityActionName>;
    arguments: Tiers<ArgumentActionName>;
    outputs: Tiers<SecurityActionName>;
  };
  dlp: {
    enabled: boolean;
    arguments: { secret: ArgumentActionName; pii: ArgumentActionName };
    outputs: { secret: SecurityActionName; pii: SecurityActionName };
    allow: DlpAllowEntry[];
    detectors?: string[] | undefined;
  };
  maxScanChars: number;
  scanBudgetMs: number;
  decode: { maxDepth: number; maxDecodedChars: number; maxCandidateChars: number };
  overrides: SecurityOverride[];
  classifier?: ClassifierConfig | undefined;
}

// ---- gateway.yaml: budgets and approvals ----

export interface BudgetRule {
  name: string;
  per: "agent" | "shared";
  tools: string[];
  period: "minute" | "hour" | "day" | "week" | "month";
  limit: number;
  unit: "cost" | "calls";
  description?: string | undefined;
  agents?: string[] | undefined;
  roles?: string[] | undefined;
  issuers?: string[] | undefined;
  warnAt?: number | undefined;
}

export interface BudgetsConfig {
  whenStoreDown: "allow" | "refuse";
  warnAt: number;
  rules: BudgetRule[];
}

export interface ApproverConfig {
  tools: string[];
  roles?: string[] | undefined;
  agents?: string[] | undefined;
  issuer?: string | undefined;
  description?: string | undefined;
}

export interface ApprovalRuleConfig {
  name: string;
  inBand: boolean;
  description?: string | undefined;
  risk?: Risk[] | undefined;
  tools?: string[] | undefined;
  when?: string | undefined;
  approvers?: ApproverConfig[] | undefined;
  ttl?: Duration | undefined;
  uses?: number | undefined;
}

export interface ApprovalsConfig {
  rules: ApprovalRuleConfig[];
  approvers: ApproverConfig[];
  ttl: Duration;
  pendingFor: Duration;
  uses: number;
  maxPendingPerAgent: number;
  admin: { roles: string[]; issuers?: string[] | undefined };
  approveUrl?: string | undefined;
  webhook?:
    | { timeout: Duration; attempts: number; url?: string | undefined; urlEnv?: string | undefined }
    | undefined;
}

// ---- gateway.yaml: sealing and the aggregated endpoint ----

export interface SessionsConfig {
  /** Where the keys that seal session ids, event ids, hop tokens and approval states are read. */
  keys: ({ file: string } | { env: string })[];
}

export interface BrokerConfig {
  separator: string;
  hopTokenTtl: Duration;
  views: Record<
    string,
    { servers: string[]; description?: string | undefined; tools?: string[] | undefined }
  >;
  lists: { ttl: Duration; maxEntries: number; maxBytes: number };
  hopUrl?: string | undefined;
}

/**
 * The gateway.yaml sections the policy core decides with. The listeners, the edge's data plane,
 * the store, caching, tracing and process settings are the adapters' and stay in config/.
 */
export interface PolicyConfig {
  publicUrl: string;
  allowedOrigins: string[];
  allowedHosts: string[];
  auth: AuthConfig;
  roles: Record<string, RoleConfig>;
  agents: Record<string, AgentConfig>;
  limits: LimitsConfig;
  security: SecurityConfig;
  budgets: BudgetsConfig;
  approvals: ApprovalsConfig;
  sessions: SessionsConfig;
  broker: BrokerConfig;
}
