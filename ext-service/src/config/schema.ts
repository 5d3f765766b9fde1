import { z } from "zod";
import { DLP_DETECTOR_NAMES } from "../policy/dlp.js";
import { durationMs } from "../model/duration.js";
import type { PolicyConfig, Registry as PolicyRegistry } from "../policy/settings.js";
import { inlineSecretProblem } from "../policy/upstream-credentials.js";

/**
 * Schemas for gateway.yaml and registry.yaml. Every object is strict so a misspelled key is an
 * error that names the key, never a silently ignored setting.
 */

/** Re-exported: config/ and its callers read durations through the schema module. */
export { durationMs };

const DURATION_HINT = "expected a duration: seconds as a number, or a string such as 500ms, 30s, 10m, 1h";
const Duration = z
  .union(
    [z.number().nonnegative(DURATION_HINT), z.string().regex(/^\d+(\.\d+)?(ms|s|m|h)$/, DURATION_HINT)],
    { error: DURATION_HINT },
  )
  .describe("A duration: seconds as a number, or a string such as 500ms, 30s, 10m, 1h");

/** http(s) URLs only: an `ftp:` or `file:` upstream or key endpoint is a mistake, not a feature. */
const HttpUrl = z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" });

const Glob = z.string().min(1).describe("A glob over server/name: * matches within a segment, ** across");

export const AlgorithmSchema = z.enum([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "HS256",
  "HS384",
  "HS512",
]);

export const JwksSourceSchema = z.union(
  [
    z
      .object({
        uri: HttpUrl.describe("Remote JWKS endpoint"),
        timeout: Duration.default("5s"),
        cacheMaxAge: Duration.default("10m").describe("How long fetched keys are trusted without refetching"),
        cooldown: Duration.default("30s").describe(
          "Minimum time between refetches triggered by an unknown kid",
        ),
      })
      .strict(),
    z
      .object({ file: z.string().min(1).describe("Path to a JWKS JSON file, relative to gateway.yaml") })
      .strict(),
    z
      .object({
        inline: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).strict(),
      })
      .strict(),
    z
      .object({
        secretEnv: z.string().min(1).describe("Environment variable holding a shared HMAC secret (HS* only)"),
      })
      .strict(),
  ],
  {
    error:
      "expected exactly one key source: uri (with optional timeout, cacheMaxAge, cooldown), file, inline or secretEnv",
  },
);

export const IssuerSchema = z
  .object({
    issuer: z.string().min(1),
    audiences: z.array(z.string().min(1)).min(1),
    jwks: JwksSourceSchema,
    algorithms: z.array(AlgorithmSchema).min(1).default(["RS256", "ES256", "EdDSA"]),
    agentClaim: z.string().min(1).default("sub").describe("Claim that names the agent"),
    rolesClaim: z
      .string()
      .min(1)
      .default("roles")
      .describe("Claim holding the agent's roles (array or space separated)"),
    trustTokenRoles: z
      .boolean()
      .default(true)
      .describe("Whether roles in the token count, besides config roles"),
  })
  .strict();

export const AuthSchema = z
  .object({
    mode: z.enum(["required", "optional"]).default("required"),
    anonymous: z
      .object({ agent: z.string().min(1).default("anonymous"), roles: z.array(z.string()).default([]) })
      .strict()
      .default({ agent: "anonymous", roles: [] })
      .describe("Principal used in optional mode when no token is sent"),
    issuers: z.array(IssuerSchema).default([]),
    clockSkew: Duration.default("30s"),
    maxTokenLifetime: Duration.refine((d) => durationMs(d) > 0, "must be longer than 0")
      .default("24h")
      .describe(
        "Longest a token may still be valid: one whose exp is further away (plus clockSkew) is refused, as is one whose iat is in the future",
      ),
    tokenCache: z
      .object({
        ttl: Duration.default("60s").describe("Upper bound; an entry never outlives the token's exp"),
        maxEntries: z.number().int().positive().default(10_000),
      })
      .strict()
      .default({ ttl: "60s", maxEntries: 10_000 }),
    authorizationServers: z
      .array(HttpUrl)
      .default([])
      .describe(
        "Authorization server URLs (RFC 8414 issuers) advertised in RFC 9728 protected resource metadata; when empty, the issuers that are http(s) URLs",
      ),
  })
  .strict()
  .superRefine(
    (auth, ctx) => {
      // Runs even when other auth settings are invalid (see `when`): read the input defensively.
      const mode: unknown = (auth as { mode?: unknown }).mode ?? "required";
      const issuers: unknown = (auth as { issuers?: unknown }).issuers ?? [];
      if (!Array.isArray(issuers)) return;
      if (mode === "required" && issuers.length === 0) {
        ctx.addIssue({
          code: "custom",
          path: ["issuers"],
          message: "mode 'required' needs at least one issuer",
        });
      }
      const seen = new Set<string>();
      issuers.forEach((issuer: unknown, i) => {
        const name: unknown = (issuer as { issuer?: unknown } | null)?.issuer;
        if (typeof name !== "string") return;
        if (seen.has(name)) {
          ctx.addIssue({
            code: "custom",
            path: ["issuers", i, "issuer"],
            message: `duplicate issuer '${name}'`,
          });
        }
        seen.add(name);
      });
    },
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  );

export const GrantSchema = z
  .object({
    tools: z.array(Glob).default([]),
    prompts: z.array(Glob).default([]),
    resources: z.array(Glob).default([]).describe("server/URI globs"),
  })
  .strict();

export const RuleSchema = z
  .object({
    effect: z.enum(["allow", "deny"]),
    tools: z.array(Glob).optional(),
    prompts: z.array(Glob).optional(),
    resources: z.array(Glob).optional(),
    when: z
      .string()
      .min(1)
      .optional()
      .describe("CEL condition over claims, agent, roles, server, name, arguments, now (timestamp)"),
    approval: z
      .literal("required")
      .optional()
      .describe(
        "Tool calls this allow rule lets through need a human approval first (approvals.approvers decide; docs/APPROVALS.md)",
      ),
    description: z.string().optional(),
  })
  .strict()
  .refine((r) => r.tools || r.prompts || r.resources, {
    message: "a rule needs at least one of tools, prompts, resources",
  })
  .refine((r) => r.approval === undefined || (r.effect === "allow" && r.tools !== undefined), {
    message: "approval: required belongs on an allow rule with tools",
    path: ["approval"],
  });

export const RoleSchema = z
  .object({
    description: z.string().optional(),
    rules: z.array(RuleSchema).default([]),
  })
  .strict();

export const AgentSchema = z
  .object({
    description: z.string().optional(),
    issuer: z
      .string()
      .min(1)
      .optional()
      .describe(
        "The issuer (auth.issuers[].issuer) whose tokens speak for this agent; required when there is more than one issuer",
      ),
    roles: z.array(z.string().min(1)).default([]),
  })
  .strict();

const Port = z.number().int().min(0).max(65535);
const Listen = (port: number, host: string) =>
  z
    .object({ host: z.string().min(1).default(host), port: Port.default(port) })
    .strict()
    .default({ host, port });

/**
 * The ext-service's gRPC listener. Whoever reaches it can play Envoy: send any identity in the
 * ext_authz metadata and write audit records for it. So it binds loopback by default, and any
 * other address needs mutual TLS (the client certificate Envoy presents, checked against
 * clientCa).
 */
const GrpcTlsSchema = z
  .object({
    cert: z.string().min(1).describe("PEM server certificate chain (relative to this file, or absolute)"),
    key: z.string().min(1).describe("PEM private key of the certificate"),
    clientCa: z
      .string()
      .min(1)
      .describe("PEM CA certificate(s) a client certificate must chain to; clients without one are refused"),
  })
  .strict();

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);
export const isLoopbackHost = (host: string): boolean => LOOPBACK.has(host) || /^127\./.test(host);

const GrpcListenSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    port: Port.default(9001),
    tls: GrpcTlsSchema.optional().describe("Mutual TLS: required when host is not a loopback address"),
  })
  .strict()
  .superRefine((grpc, ctx) => {
    if (!isLoopbackHost(grpc.host) && !grpc.tls)
      ctx.addIssue({
        code: "custom",
        path: ["tls"],
        message:
          `listen.grpc.host '${grpc.host}' is reachable from other hosts: set listen.grpc.tls (mutual TLS with ` +
          "Envoy's client certificate) or bind 127.0.0.1; anyone reaching the port could claim any identity",
      });
  })
  .default({ host: "127.0.0.1", port: 9001 });

export const LimitsSchema = z
  .object({
    maxRequestBytes: z.number().int().positive().default(1_048_576),
    maxResponseBytes: z
      .number()
      .int()
      .positive()
      // 2 MiB: the shipped Envoy bootstrap buffers responses up to the same size, so both planes
      // refuse the same responses (envoy/envoy.yaml per_connection_buffer_limit_bytes).
      .default(2_097_152)
      .describe("Largest buffered JSON response the gateway inspects; larger ones are refused"),
    maxBatchSize: z.number().int().positive().default(32),
    maxJsonDepth: z.number().int().positive().default(64),
    maxSseEventBytes: z.number().int().positive().default(4_194_304),
  })
  .strict()
  .default({
    maxRequestBytes: 1_048_576,
    maxResponseBytes: 2_097_152,
    maxBatchSize: 32,
    maxJsonDepth: 64,
    maxSseEventBytes: 4_194_304,
  });

export const EdgeSchema = z
  .object({
    rateLimit: z
      .object({
        requestsPerSecond: z.number().positive().default(50),
        burst: z.number().int().positive().default(100),
      })
      .strict()
      .default({ requestsPerSecond: 50, burst: 100 }),
    upstreamTimeout: Duration.default("30s").describe("Time to first response byte from an MCP server"),
    breaker: z
      .object({
        consecutiveFailures: z.number().int().positive().default(5),
        cooldown: Duration.default("10s"),
      })
      .strict()
      .default({ consecutiveFailures: 5, cooldown: "10s" }),
    headersTimeout: Duration.default("10s"),
    requestTimeout: Duration.default("30s").describe("Time allowed for a client to send its request body"),
    perAgent: z
      .object({
        maxRequests: z
          .number()
          .int()
          .positive()
          .default(64)
          .describe("Requests (streams included) one agent may have open at once"),
        maxStreams: z
          .number()
          .int()
          .positive()
          .default(16)
          .describe("Server-to-client streams (GET, subscriptions/listen) one agent may hold open"),
      })
      .strict()
      .default({ maxRequests: 64, maxStreams: 16 }),
  })
  .strict()
  .default({
    rateLimit: { requestsPerSecond: 50, burst: 100 },
    upstreamTimeout: "30s",
    breaker: { consecutiveFailures: 5, cooldown: "10s" },
    headersTimeout: "10s",
    requestTimeout: "30s",
    perAgent: { maxRequests: 64, maxStreams: 16 },
  });

const SecurityAction = z
  .enum(["block", "redact", "annotate", "log"])
  .describe(
    "block: refuse (drop the tool, answer an error); redact: replace the text; annotate: pass with a warning; log: pass, count and audit",
  );
const ArgumentAction = z
  .enum(["block", "log"])
  .describe("block: refuse the request; log: forward, count and audit");
// Every kind, and the group names of kinds split since (github_token, gitlab_token, stripe_key).
const DlpKind = z.enum(DLP_DETECTOR_NAMES as [string, ...string[]]);

type SecurityActionValue = "block" | "redact" | "annotate" | "log";
type ArgumentActionValue = "block" | "log";

const tierActions = (block: SecurityActionValue, alert: SecurityActionValue) =>
  z
    .object({ block: SecurityAction.default(block), alert: SecurityAction.default(alert) })
    .strict()
    .prefault({})
    .describe("Action for findings of high-precision (block) and broad (alert) rules");
const argumentTierActions = (block: ArgumentActionValue, alert: ArgumentActionValue) =>
  z
    .object({ block: ArgumentAction.default(block), alert: ArgumentAction.default(alert) })
    .strict()
    .prefault({})
    .describe("Action for findings of high-precision (block) and broad (alert) rules");

export const DlpAllowSchema = z
  .object({
    detector: DlpKind.optional().describe(
      "Limit this entry to one detector; alone, it turns the detector off",
    ),
    values: z.array(z.string().min(1)).optional().describe("Exact matched values that are not sensitive"),
    patterns: z
      .array(z.string().min(1))
      .optional()
      .describe("Regular expressions a matched value must match in full to be allowed"),
    description: z.string().optional(),
  })
  .strict()
  .refine((a) => a.detector || a.values || a.patterns, {
    message: "an allow entry needs detector, values or patterns",
  });

const InjectionOverrideSchema = z
  .object({
    enabled: z.boolean().optional(),
    descriptions: z.object({ block: SecurityAction, alert: SecurityAction }).partial().strict().optional(),
    arguments: z.object({ block: ArgumentAction, alert: ArgumentAction }).partial().strict().optional(),
    outputs: z.object({ block: SecurityAction, alert: SecurityAction }).partial().strict().optional(),
  })
  .strict();

const DlpOverrideSchema = z
  .object({
    enabled: z.boolean().optional(),
    arguments: z.object({ secret: ArgumentAction, pii: ArgumentAction }).partial().strict().optional(),
    outputs: z.object({ secret: SecurityAction, pii: SecurityAction }).partial().strict().optional(),
    allow: z.array(DlpAllowSchema).optional().describe("Added to the global allowlist for matching tools"),
  })
  .strict();

export const SecurityOverrideSchema = z
  .object({
    match: z
      .array(Glob)
      .min(1)
      .describe("server/name globs: a tool, prompt or resource URI (e.g. tickets/*, kb/**)"),
    description: z.string().optional(),
    validateArguments: z.boolean().optional(),
    injection: InjectionOverrideSchema.optional(),
    dlp: DlpOverrideSchema.optional(),
  })
  .strict();

export const SecuritySchema = z
  .object({
    pins: z
      .object({
        enforce: z
          .boolean()
          .default(true)
          .describe("Drop drifted tools from tools/list and refuse calls to them; false only counts drift"),
        verifyBeforeCall: z
          .boolean()
          .default(true)
          .describe(
            "Before forwarding a tools/call whose definition this process has not checked within verifiedFor, fetch the server's tools/list and check it; a tool that cannot be checked is refused (tool_pin_unverified)",
          ),
        verifiedFor: Duration.default("5m").describe(
          "How long a definition checked in a tools/list (the agent's or the gateway's own) counts as verified",
        ),
        listTimeout: Duration.default("750ms").describe(
          "How long the gateway waits for a server's tools/list it fetches itself; keep it below Envoy's ext_proc message_timeout",
        ),
      })
      .strict()
      .prefault({}),
    validateArguments: z
      .boolean()
      .default(true)
      .describe("Validate tools/call arguments against the tool's pinned inputSchema"),
    injection: z
      .object({
        enabled: z.boolean().default(true),
        descriptions: tierActions("block", "log").describe(
          "Tool descriptions (and schema texts) in tools/list and the initialize instructions",
        ),
        arguments: argumentTierActions("block", "log").describe("tools/call and prompts/get arguments"),
        outputs: tierActions("block", "annotate").describe(
          "Tool results, prompts, resources, sampling and elicitation requests from servers",
        ),
      })
      .strict()
      .prefault({}),
    dlp: z
      .object({
        enabled: z.boolean().default(true),
        detectors: z.array(DlpKind).optional().describe("Detectors to run; all when omitted"),
        arguments: z
          .object({ secret: ArgumentAction.default("block"), pii: ArgumentAction.default("log") })
          .strict()
          .prefault({})
          .describe("Secrets and personal data in tools/call and prompts/get arguments"),
        outputs: z
          .object({ secret: SecurityAction.default("redact"), pii: SecurityAction.default("redact") })
          .strict()
          .prefault({})
          .describe("Secrets and personal data in everything servers send"),
        allow: z.array(DlpAllowSchema).default([]),
      })
      .strict()
      .prefault({}),
    maxScanChars: z
      .number()
      .int()
      .positive()
      .default(2_097_152)
      .describe(
        "Most characters of text inspected per message; a larger server message is refused (response_too_large), a larger request scan_budget_exceeded, since scanning it would stall the event loop",
      ),
    scanBudgetMs: z
      .number()
      .positive()
      .default(500)
      .describe(
        "Most milliseconds spent inspecting one message (a request's arguments or a server message): no further string is scanned after it, and the message is refused (scan_budget_exceeded)",
      ),
    classifier: z
      .object({
        url: z
          .string()
          .url()
          .refine((u) => /^https?:\/\//.test(u), "must be an http(s) URL")
          .describe("POST endpoint of the prompt-injection classifier"),
        timeout: Duration.default("300ms").describe("How long one classification may take"),
        failMode: z
          .enum(["open", "closed"])
          .default("closed")
          .describe(
            "What a text the classifier could not judge (timeout, error, down) gets: closed blocks it, open lets it pass",
          ),
        auth: z
          .object({
            header: z.string().min(1).default("authorization"),
            valueEnv: z
              .string()
              .min(1)
              .optional()
              .describe("Environment variable holding the header's value"),
            valueFile: z.string().min(1).optional().describe("File holding the header's value"),
          })
          .strict()
          .refine((a) => (a.valueEnv === undefined) !== (a.valueFile === undefined), {
            message: "set exactly one of valueEnv and valueFile",
          })
          .optional(),
        threshold: z
          .number()
          .min(0)
          .max(1)
          .default(0.5)
          .describe("Score at or above which a scored answer counts as an injection"),
        surfaces: z
          .array(z.enum(["outputs", "descriptions"]))
          .default([])
          .describe(
            "Surfaces whose every text is classified; otherwise only texts the rules find uncertain (alert-tier findings, or matches in text that discusses attacks)",
          ),
        minChars: z.number().int().min(1).default(20).describe("Shorter texts are never sent"),
        cache: z
          .object({
            maxEntries: z.number().int().positive().default(10_000),
            ttl: Duration.default("1h"),
          })
          .strict()
          .prefault({})
          .describe("Verdicts kept by the SHA-256 of the text"),
      })
      .strict()
      .optional()
      .describe(
        "An HTTP prompt-injection classifier consulted for JSON responses (tool results, prompts, resources, lists): see docs/SECURITY.md",
      ),
    decode: z
      .object({
        maxDepth: z.number().int().min(0).max(8).default(3),
        maxDecodedChars: z.number().int().positive().default(262_144),
        maxCandidateChars: z.number().int().positive().default(65_536),
      })
      .strict()
      .prefault({})
      .describe("Bounds on decoding base64/hex/percent layers before injection rules run"),
    overrides: z
      .array(SecurityOverrideSchema)
      .default([])
      .describe("Per server/tool settings; later entries win"),
  })
  .strict()
  .prefault({});

const RedisTlsSchema = z
  .object({
    caFile: z.string().min(1).optional().describe("PEM file of the CA(s) that sign Redis' certificate"),
    certFile: z
      .string()
      .min(1)
      .optional()
      .describe("PEM client certificate, for Redis with tls-auth-clients"),
    keyFile: z.string().min(1).optional().describe("PEM private key of certFile"),
    serverName: z.string().min(1).optional().describe("Name to verify in Redis' certificate (SNI)"),
  })
  .strict();

export const StateSchema = z
  .object({
    store: z
      .enum(["memory", "redis"])
      .default("memory")
      .describe("memory: one process (nothing to run); redis: shared by every replica"),
    redis: z
      .object({
        url: z
          .string()
          .regex(/^rediss?:\/\/[^\s]+$/, "expected a redis:// or rediss:// (TLS) URL")
          .describe("redis://host:port[/db], or rediss:// for TLS; keep passwords out of it (passwordEnv)"),
        usernameEnv: z.string().min(1).optional().describe("Environment variable holding the ACL user name"),
        passwordEnv: z.string().min(1).optional().describe("Environment variable holding the password"),
        tls: RedisTlsSchema.optional().describe("TLS settings; a rediss:// URL uses TLS without them"),
        keyPrefix: z.string().default("mcp-gateway:").describe("Prepended to every key and channel"),
        connectTimeout: Duration.default("2s"),
        commandTimeout: Duration.default("500ms").describe(
          "A command not answered in this time counts as Redis being unavailable",
        ),
      })
      .strict()
      .optional(),
  })
  .strict()
  .prefault({})
  .refine((s) => s.store !== "redis" || s.redis !== undefined, {
    message: "store 'redis' needs a redis section with at least a url",
    path: ["redis"],
  });

const BudgetNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, "budget names: lower-case letters, digits, '_', '.', '-'");

export const BudgetRuleSchema = z
  .object({
    name: BudgetNameSchema.describe("Stable name: in counter keys, audit records and metrics"),
    description: z.string().optional(),
    agents: z.array(z.string().min(1)).optional().describe("Agents it applies to"),
    roles: z.array(z.string().min(1)).optional().describe("Holders of any of these roles"),
    issuers: z
      .array(z.string().min(1))
      .optional()
      .describe("Agents whose token came from one of these issuers"),
    per: z
      .enum(["shared", "agent"])
      .default("shared")
      .describe("shared: one counter for everyone it applies to; agent: a counter per agent"),
    tools: z.array(Glob).min(1).default(["**"]).describe("server/tool globs of the calls it counts"),
    period: z
      .enum(["minute", "hour", "day", "week", "month"])
      .describe("Calendar period (UTC) of the counter"),
    limit: z.number().int().positive().describe("Calls, or cost units, allowed per period"),
    unit: z
      .enum(["calls", "cost"])
      .default("calls")
      .describe("calls: 1 per call; cost: the tool's registry cost"),
    warnAt: z
      .number()
      .gt(0)
      .lte(1)
      .optional()
      .describe("Warning threshold (fraction of limit); default budgets.warnAt"),
  })
  .strict();

export const BudgetsSchema = z
  .object({
    whenStoreDown: z
      .enum(["refuse", "allow"])
      .default("refuse")
      .describe("refuse: calls a budget counts are refused while the store is unavailable (fail closed)"),
    warnAt: z
      .number()
      .gt(0)
      .lte(1)
      .default(0.8)
      .describe("Fraction of a limit that is audited and counted as a warning"),
    rules: z.array(BudgetRuleSchema).default([]),
  })
  .strict()
  .prefault({})
  .superRefine((budgets, ctx) => {
    const seen = new Set<string>();
    budgets.rules.forEach((rule, i) => {
      if (seen.has(rule.name))
        ctx.addIssue({
          code: "custom",
          path: ["rules", i, "name"],
          message: `duplicate budget '${rule.name}'`,
        });
      seen.add(rule.name);
    });
  });
const RISK_LEVELS = ["low", "medium", "high", "critical"] as const;

export const ApproverSchema = z
  .object({
    roles: z
      .array(z.string().min(1))
      .optional()
      .describe("Holders of any of these roles (roles in gateway.yaml) may decide"),
    agents: z
      .array(z.string().min(1))
      .optional()
      .describe("Named principals (agents in gateway.yaml) who may decide"),
    issuer: z
      .string()
      .min(1)
      .optional()
      .describe("Only tokens of this issuer (auth.issuers[].issuer) count for this entry"),
    tools: z
      .array(Glob)
      .min(1)
      .default(["**"])
      .describe("server/tool globs of the calls this entry may decide"),
    description: z.string().optional(),
  })
  .strict()
  .refine((a) => a.roles !== undefined || a.agents !== undefined, {
    message: "an approver entry needs roles or agents",
  });

const ApprovalRuleNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, "rule names: lower-case letters, digits, '_', '.', '-'");

export const ApprovalRuleSchema = z
  .object({
    name: ApprovalRuleNameSchema.describe("Stable name: in approval records, audit records and metrics"),
    description: z.string().optional(),
    risk: z
      .array(z.enum(RISK_LEVELS))
      .min(1)
      .optional()
      .describe("Registered tools with one of these risk levels (registry.yaml)"),
    tools: z.array(Glob).min(1).optional().describe("server/tool globs"),
    when: z
      .string()
      .min(1)
      .optional()
      .describe(
        "CEL condition over claims, agent, roles, server, name, arguments, now (timestamp); an error counts as true",
      ),
    approvers: z
      .array(ApproverSchema)
      .optional()
      .describe("Who may decide calls of this rule; default approvals.approvers"),
    ttl: Duration.optional().describe("How long an approval may be used; default approvals.ttl"),
    uses: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("Calls one approval lets through; default approvals.uses"),
    inBand: z
      .boolean()
      .default(false)
      .describe(
        "The caller's own user may approve in the client (MCP 2026-07-28 elicitation); only for calls an approver of another identity need not decide",
      ),
  })
  .strict()
  .refine((r) => r.risk !== undefined || r.tools !== undefined || r.when !== undefined, {
    message: "an approval rule needs at least one of risk, tools, when",
  });

export const ApprovalsSchema = z
  .object({
    rules: z
      .array(ApprovalRuleSchema)
      .default([])
      .describe("Which tool calls need approval; the first rule that matches decides"),
    approvers: z
      .array(ApproverSchema)
      .default([])
      .describe("Who may decide, unless a rule names its own; never the caller itself"),
    ttl: Duration.refine((d) => durationMs(d) > 0, "must be longer than 0")
      .default("5m")
      .describe("How long an approved call may be retried"),
    pendingFor: Duration.refine((d) => durationMs(d) > 0, "must be longer than 0")
      .default("15m")
      .describe("How long a request waits for a decision; a denial holds for as long"),
    uses: z.number().int().positive().default(1).describe("Identical calls one approval lets through"),
    maxPendingPerAgent: z
      .number()
      .int()
      .positive()
      .default(20)
      .describe("Undecided requests one agent may have open; more are refused (approval_unavailable)"),
    admin: z
      .object({
        roles: z
          .array(z.string().min(1))
          .default(["admin"])
          .describe("Roles whose tokens may list, show and deny approvals through the admin API"),
        issuers: z
          .array(z.string().min(1))
          .optional()
          .describe("Issuers whose tokens the admin API accepts; default every auth.issuers entry"),
      })
      .strict()
      .prefault({}),
    approveUrl: HttpUrl.optional().describe(
      "Where approvers decide, as people reach it (the admin API or a console); default the admin port's /admin/approvals",
    ),
    webhook: z
      .object({
        url: HttpUrl.optional().describe("Incoming webhook URL (a Slack-compatible JSON body with `text`)"),
        urlEnv: z
          .string()
          .min(1)
          .optional()
          .describe("Environment variable holding the URL instead (webhook URLs are secrets)"),
        timeout: Duration.default("5s"),
        attempts: z.number().int().min(1).max(10).default(5).describe("Tries, with exponential backoff"),
      })
      .strict()
      .refine((w) => (w.url === undefined) !== (w.urlEnv === undefined), {
        message: "expected exactly one of url, urlEnv",
      })
      .optional()
      .describe("Notified of every new request for approval"),
  })
  .strict()
  .prefault({})
  .superRefine((approvals, ctx) => {
    const seen = new Set<string>();
    approvals.rules.forEach((rule, i) => {
      if (seen.has(rule.name))
        ctx.addIssue({
          code: "custom",
          path: ["rules", i, "name"],
          message: `duplicate rule '${rule.name}'`,
        });
      seen.add(rule.name);
      const approvers = rule.approvers ?? approvals.approvers;
      if (approvers.length === 0 && !rule.inBand)
        ctx.addIssue({
          code: "custom",
          path: ["rules", i],
          message:
            "nobody could approve these calls: set approvals.approvers, the rule's approvers, or inBand",
        });
    });
  });

const SecretSourceSchema = z.union(
  [
    z
      .object({
        file: z
          .string()
          .min(1)
          .describe("File holding the secret (at least 32 characters), relative to gateway.yaml"),
      })
      .strict(),
    z
      .object({
        env: z.string().min(1).describe("Environment variable holding the secret (at least 32 characters)"),
      })
      .strict(),
  ],
  { error: "expected a secret source: file or env" },
);

export const SessionsSchema = z
  .object({
    keys: z
      .array(SecretSourceSchema)
      .max(4)
      .default([])
      .describe(
        "Secrets that seal the session ids the gateway gives clients. The first seals, all open (rotation: add the new key first, drop the old one later). Empty: a random key per process",
      ),
  })
  .strict()
  .prefault({});

const ViewNameSchema = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    "view names are DNS labels: lower-case letters, digits and '-'",
  );

export const BrokerViewSchema = z
  .object({
    description: z.string().optional(),
    servers: z
      .array(z.string().min(1))
      .min(1)
      .describe("Registry servers in this view; the agent still sees only what its roles allow"),
    tools: z
      .array(z.string().regex(/^[a-z0-9-]+\/(\*|[^*/]+)$/, "expected '<server>/<tool>' or '<server>/*'"))
      .optional()
      .describe(
        "Tools offered in this view ('<server>/<tool>' or '<server>/*'); absent: every tool of its servers",
      ),
    prefix: z
      .boolean()
      .default(true)
      .describe(
        "false: the view's one server keeps its own names (no '<server><separator>' prefix), so a client written for /mcp/<server> works unchanged",
      ),
  })
  .strict()
  .superRefine((view, ctx) => {
    // Without a prefix, two servers' names could collide and a name would not say where it goes.
    if (!view.prefix && view.servers.length !== 1)
      ctx.addIssue({
        code: "custom",
        path: ["prefix"],
        message: "prefix: false needs exactly one server in the view",
      });
  });

export const BrokerSchema = z
  .object({
    separator: z
      .string()
      .regex(/^[_.]{1,4}$/, "expected 1-4 characters from '_' and '.' (server names never contain them)")
      .default("__")
      .describe(
        "Between the server name and the tool or prompt name on the aggregated endpoint (/mcp); resource URIs and URI templates are '<server>.<uri>' whatever it is",
      ),
    hopTokenTtl: Duration.default("60s").describe(
      "Lifetime of the gateway-sealed identity the broker presents on its hop to /mcp/<server>",
    ),
    hopUrl: HttpUrl.optional().describe(
      "Where the broker reaches /mcp/<server>: Envoy's listener behind Envoy; absent: the local edge itself",
    ),
    sessionTtl: Duration.default("24h").describe(
      "Lifetime of an aggregated 2025 session (sealed into its id): after it the id is unknown (404) and the client starts a new session",
    ),
    liveSessions: z
      .object({
        max: z
          .number()
          .int()
          .positive()
          .default(10_000)
          .describe(
            "2025 sessions one process holds in memory (the least recently used goes first); read at start",
          ),
        idle: Duration.default("30m").describe(
          "How long a 2025 session with no request in progress and no stream open stays in memory",
        ),
      })
      .strict()
      .prefault({})
      .describe(
        "The 2025 sessions of /mcp a process holds: one that leaves (evicted, idle) ends the hop sessions only this process knew; its id still reopens",
      ),
    probeInterval: Duration.default("15s").describe(
      "How often the broker asks a server left out of the views (found down) whether it answers again, while a client stream of /mcp has it in its view; 0: only the next hop to it tells",
    ),
    fanoutTimeout: Duration.default("5s").describe(
      "How long an answer that asks every server of the view (initialize, the lists, a 2026-07-28 request's capabilities) waits for them: a server that has not answered by then is left out of that answer, audited and counted; its hop goes on. 5s: far above a healthy server's answer, far below edge.upstreamTimeout; 0: no deadline of its own",
    ),
    views: z
      .record(ViewNameSchema, BrokerViewSchema)
      .default({})
      .describe("Named subsets served at /mcp/views/<name>"),
    lists: z
      .object({
        ttl: Duration.default("60s").describe(
          "How long a server's list is kept per agent view when the server gives no caching hints (2025 revisions); 0 keeps none",
        ),
        maxEntries: z.number().int().positive().default(10_000),
        maxBytes: z
          .number()
          .int()
          .positive()
          .default(33_554_432)
          .describe("Memory the kept lists may use (their JSON size)"),
      })
      .strict()
      .prefault({})
      .describe(
        "The broker's list cache: per agent, view, server and list kind; dropped on list_changed, reloads and drift",
      ),
    replay: z
      .object({
        maxEvents: z.number().int().positive().default(1_000).describe("Events kept per session"),
        maxBytes: z
          .number()
          .int()
          .positive()
          .default(1_048_576)
          .describe("Bytes (JSON size) kept per session; a larger event is not kept"),
        maxTotalBytes: z
          .number()
          .int()
          .positive()
          .default(67_108_864)
          .describe(
            "Bytes kept for every session of the process together (the oldest go first); read at start",
          ),
        ttl: Duration.default("5m").describe("How long an event is kept for a client to resume after it"),
        retry: Duration.default("1s").describe(
          "The SSE retry field the broker's streams give 2025-11-25 clients: how long to wait before resuming",
        ),
      })
      .strict()
      .prefault({})
      .describe(
        "Resumable streams of the 2025 sessions (Last-Event-ID): the events kept to replay after a disconnection",
      ),
    streams: z
      .object({
        maxPerAgent: z
          .number()
          .int()
          .positive()
          .optional()
          .describe(
            "Client streams (2025 GET, 2026-07-28 subscriptions/listen) whose servers' streams the broker holds for one agent, open or lingering; absent: edge.perAgent.maxStreams",
          ),
        linger: Duration.default("60s").describe(
          "How long the servers' streams behind a closed 2025 GET stream stay open for the client to resume; at most broker.replay.ttl",
        ),
      })
      .strict()
      .prefault({})
      .describe(
        "The servers' streams the broker opens behind each client stream of /mcp (one per server of the view)",
      ),
  })
  .strict()
  .prefault({})
  .describe("The aggregated endpoint /mcp: one MCP server over every server the agent may use");

export const TracingSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe("Export OpenTelemetry spans (OTLP/HTTP) for each exchange: a SERVER and a CLIENT span"),
    endpoint: z
      .string()
      .url()
      .default("http://localhost:4318/v1/traces")
      .describe(
        "OTLP/HTTP traces URL; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, override it",
      ),
    serviceName: z
      .string()
      .min(1)
      .default("mcp-gateway")
      .describe("The spans' service.name; OTEL_SERVICE_NAME overrides it"),
    sampleRatio: z
      .number()
      .min(0)
      .max(1)
      .default(1)
      .describe("Share of new traces recorded; a caller's sampled trace is always followed"),
    traceUrl: z
      .string()
      .refine((v) => /^https?:\/\/[^\s]+$/.test(v) && v.includes("{trace_id}"), {
        message: "an http(s) URL with {trace_id} where the trace id goes",
      })
      .optional()
      .describe(
        "Where a person opens a trace (the tracing backend's UI), {trace_id} standing for the id: the console's Audit page links each record's trace there",
      ),
  })
  .strict()
  .prefault({});

export const CacheSchema = z
  .object({
    maxEntries: z.number().int().positive().default(10_000),
    maxBytes: z.number().int().positive().default(67_108_864).describe("Memory the cached results may use"),
    shared: z
      .boolean()
      .default(false)
      .describe("Keep entries in the state store (Redis), shared by every replica, instead of in memory"),
    hints: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe("Reuse list and resources/read results for as long as their ttlMs says (2026-07-28)"),
        maxTtl: Duration.default("5m").describe(
          "The longest the gateway keeps such a result, whatever its ttlMs",
        ),
      })
      .strict()
      .prefault({})
      .describe("The 2026-07-28 caching hints (ttlMs, cacheScope) of list results and resources/read"),
  })
  .strict()
  .prefault({})
  .describe("The result cache: tools with a registry cache setting, and results with caching hints");

export const GatewayConfigSchema = z
  .object({
    $schema: z.string().optional(),
    registry: z.string().min(1).describe("Path to registry.yaml, relative to this file"),
    publicUrl: HttpUrl.optional().describe(
      "Base URL agents use to reach the gateway (for resource metadata); defaults to http://localhost:<listen.edge.port>",
    ),
    allowedOrigins: z
      .array(
        z
          .string()
          .regex(/^(null|https?:\/\/[^\s/?#]+)$/, "expected an origin such as https://app.example.com"),
      )
      .default([])
      .describe(
        "Web origins (scheme://host[:port]) besides publicUrl's own whose pages may call the gateway; a request with any other Origin header is refused with 403",
      ),
    allowedHosts: z
      .array(z.string().min(1))
      .default([])
      .describe(
        "Host names accepted on a loopback address besides localhost, 127.0.0.1, [::1] and publicUrl's host (DNS rebinding protection)",
      ),
    listen: z
      .object({
        grpc: GrpcListenSchema,
        admin: Listen(9901, "127.0.0.1"),
        edge: Listen(8080, "127.0.0.1"),
        broker: Listen(9002, "127.0.0.1").describe(
          "serve: the aggregated endpoint's HTTP listener, where Envoy routes /mcp and /mcp/views/<name>",
        ),
      })
      .strict()
      .default({
        grpc: { host: "127.0.0.1", port: 9001 },
        admin: { host: "127.0.0.1", port: 9901 },
        edge: { host: "127.0.0.1", port: 8080 },
        broker: { host: "127.0.0.1", port: 9002 },
      }),
    auth: AuthSchema,
    roles: z.record(z.string().min(1), RoleSchema).default({}),
    agents: z.record(z.string().min(1), AgentSchema).default({}),
    limits: LimitsSchema,
    edge: EdgeSchema,
    security: SecuritySchema,
    state: StateSchema,
    budgets: BudgetsSchema,
    approvals: ApprovalsSchema,
    cache: CacheSchema,
    sessions: SessionsSchema,
    broker: BrokerSchema,

    tracing: TracingSchema,
    shutdownGrace: Duration.default("10s"),
    drainDelay: Duration.default("12s").describe(
      "serve: after SIGTERM, how long gRPC health and /readyz report NOT_SERVING while new calls are still accepted, before draining; above Envoy's health check interval x unhealthy_threshold + jitter (11s in envoy/envoy.yaml)",
    ),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  })
  .strict()
  // The default follows the edge's port: a fixed :8080 pointed clients elsewhere on any other port.
  .transform((config) => ({
    ...config,
    publicUrl: config.publicUrl ?? `http://localhost:${config.listen.edge.port}`,
  }));

export const ServerNameSchema = z
  .string()
  // RFC 1035 labels: the aggregated endpoint gives a server's resource URIs as `<server>.<uri>`
  // (broker/names.ts), so the name opens the URI's scheme, which starts with a letter (RFC 3986).
  .regex(
    /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/,
    "server names are DNS labels that start with a letter: lower-case letters, digits and '-', 1-63 characters, no trailing '-' (/mcp gives their resource URIs as '<server>.<uri>', and a URI scheme starts with a letter)",
  );

const JsonObject = z.record(z.string(), z.unknown());

export const ToolSchema = z
  .object({
    name: z.string().min(1).max(128),
    title: z.string().optional(),
    description: z.string().default(""),
    inputSchema: JsonObject.default({ type: "object" }),
    outputSchema: JsonObject.optional(),
    annotations: JsonObject.optional(),
    risk: z.enum(RISK_LEVELS).default("low"),
    owner: z.string().optional(),
    deprecated: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/, "expected a date as YYYY-MM-DD")
      .optional()
      .describe("Date from which the tool is no longer offered"),
    cost: z
      .number()
      .int()
      .nonnegative()
      .default(1)
      .describe("Cost units one call uses, for budgets counted in cost (map units to money as you like)"),
    pin: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/, "expected 'sha256:' followed by 64 lower-case hex digits")
      .optional()
      .describe("SHA-256 of the canonical tool definition, written by `mcp-gateway registry pin`"),
    cache: z
      .object({
        ttl: Duration.describe("How long a result is served from the cache"),
        scope: z
          .enum(["agent", "shared"])
          .describe(
            "agent: each agent has its own entries; shared: every agent allowed the tool shares them",
          ),
      })
      .strict()
      .optional()
      .describe("Cache successful results of this tool (only for tools annotated readOnlyHint: true)"),
  })
  .strict()
  .superRefine((tool, ctx) => {
    // A cached answer to a call with side effects would skip them: only read-only tools qualify.
    if (tool.cache && tool.annotations?.readOnlyHint !== true) {
      ctx.addIssue({
        code: "custom",
        path: ["cache"],
        message: "cache is only allowed for tools annotated readOnlyHint: true",
      });
    }
  });

/** Headers the gateway owns on the upstream hop (identity, session, framing): never configurable. */
const GATEWAY_OWNED_HEADERS = new Set([
  "host",
  "content-length",
  "content-type",
  "accept",
  "accept-encoding",
  "transfer-encoding",
  "connection",
  "te",
  "upgrade",
  "mcp-session-id",
  "mcp-protocol-version",
  "last-event-id",
  "traceparent",
  "tracestate",
]);

const UpstreamHeaderName = z.string().regex(/^[A-Za-z0-9-]+$/, "a header name of letters, digits and '-'");

/** A value that is exactly one `${env:NAME}` or `${file:/path}` reference: a secret never written inline. */
const SecretReference = z
  .string()
  .regex(
    /^\$\{(?:env|file):[^}]+\}$/,
    "must be exactly one ${env:NAME} or ${file:/path} reference, never the secret itself",
  );

export const TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";

export const TokenExchangeSchema = z
  .object({
    tokenEndpoint: HttpUrl.refine((url) => !/^[a-z]+:\/\/[^/]*@/i.test(url), {
      // The URL is logged when an exchange fails; the client's credentials have fields of their own.
      message: "no user or password in the URL: use clientId and clientSecret",
    }).describe("The authorization server's token endpoint (RFC 8693 token exchange)"),
    clientId: z.string().min(1).describe("The gateway's client id at the authorization server"),
    clientSecret: SecretReference.describe(
      "The gateway's client secret (client_secret_basic): ${env:NAME} or ${file:/path} only",
    ),
    audience: z.string().min(1).optional().describe("The `audience` asked for: the server's logical name"),
    resource: z.url().optional().describe("The `resource` asked for (RFC 8707): the server's absolute URI"),
    scope: z.string().min(1).optional().describe("The `scope` asked for, space-separated"),
    subjectTokenType: z
      .string()
      .regex(/^urn:ietf:params:oauth:token-type:[a-z0-9_-]+$/, "a token type URI (RFC 8693 section 3)")
      .default(TOKEN_TYPE_ACCESS_TOKEN)
      .describe("What the agent's token is, as the `subject_token_type` sent"),
    header: UpstreamHeaderName.default("Authorization").describe(
      "The header the issued token goes in; `Authorization` gets `Bearer <token>`, any other the bare token",
    ),
    refreshSkewSeconds: z
      .number()
      .int()
      .nonnegative()
      .default(60)
      .describe("An issued token is exchanged again this many seconds before it expires"),
    timeout: Duration.default("1500ms").describe(
      "Time allowed for one exchange, connection to last byte; behind Envoy, below the ext_authz timeout (2s)",
    ),
  })
  .strict()
  .superRefine((exchange, ctx) => {
    if (exchange.audience === undefined && exchange.resource === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["audience"],
        message: "name the server to the authorization server: audience, resource or both",
      });
    }
    const header = exchange.header.toLowerCase();
    if (header.startsWith("x-mcp-") || GATEWAY_OWNED_HEADERS.has(header)) {
      ctx.addIssue({
        code: "custom",
        path: ["header"],
        message: `'${exchange.header}' is set by the gateway itself`,
      });
    }
  });

export const UpstreamSchema = z
  .object({
    headers: z
      .record(UpstreamHeaderName, z.string().min(1))
      .superRefine((headers, ctx) => {
        for (const [name, value] of Object.entries(headers)) {
          const lower = name.toLowerCase();
          if (lower.startsWith("x-mcp-") || GATEWAY_OWNED_HEADERS.has(lower)) {
            ctx.addIssue({ code: "custom", path: [name], message: `'${name}' is set by the gateway itself` });
            continue;
          }
          const problem = inlineSecretProblem(name, value);
          if (problem) ctx.addIssue({ code: "custom", path: [name], message: problem });
        }
      })
      .optional()
      .describe(
        "Headers added to every request to this server, replacing any the agent sent; " +
          "values from ${env:NAME} or ${file:/path} (a credential-looking header takes nothing else)",
      ),
    tokenExchange: TokenExchangeSchema.optional().describe(
      "Per-agent credentials: the agent's token exchanged for one for this server (RFC 8693)",
    ),
  })
  .strict()
  .superRefine((upstream, ctx) => {
    const exchanged = upstream.tokenExchange?.header.toLowerCase();
    if (exchanged === undefined || !upstream.headers) return;
    for (const name of Object.keys(upstream.headers)) {
      if (name.toLowerCase() !== exchanged) continue;
      ctx.addIssue({
        code: "custom",
        path: ["headers", name],
        message:
          `'${name}' is also the header of tokenExchange: one credential per header, ` +
          "either the static value or the exchanged token",
      });
    }
  });

export const ServerSchema = z
  .object({
    name: ServerNameSchema,
    description: z.string().optional(),
    owner: z.string().optional(),
    upstreams: z.array(HttpUrl).min(1).describe("Streamable HTTP endpoints of the server's replicas"),
    upstream: UpstreamSchema.optional().describe("What the gateway adds to its requests to this server"),
    tools: z.array(ToolSchema).default([]),
  })
  .strict();

export const RegistrySchema = z
  .object({
    $schema: z.string().optional(),
    version: z.string().min(1).describe("Registry release version, bumped on every reviewed change"),
    servers: z.array(ServerSchema).default([]),
  })
  .strict()
  .superRefine(
    (registry, ctx) => {
      // Runs even when other parts of the file are invalid (see `when`), so the input may be
      // malformed: look only at what has the expected shape.
      const servers: unknown = (registry as { servers?: unknown }).servers;
      if (!Array.isArray(servers)) return;
      const seen = new Set<string>();
      servers.forEach((server: unknown, i) => {
        const name = nameOf(server);
        if (name !== undefined) {
          if (seen.has(name)) {
            ctx.addIssue({
              code: "custom",
              path: ["servers", i, "name"],
              message: `duplicate server '${name}'`,
            });
          }
          seen.add(name);
        }
        const tools: unknown = (server as { tools?: unknown } | null)?.tools;
        if (!Array.isArray(tools)) return;
        const toolNames = new Set<string>();
        tools.forEach((tool: unknown, j) => {
          const toolName = nameOf(tool);
          if (toolName === undefined) return;
          if (toolNames.has(toolName)) {
            ctx.addIssue({
              code: "custom",
              path: ["servers", i, "tools", j, "name"],
              message: `duplicate tool '${toolName}' on server '${name ?? `#${i}`}'`,
            });
          }
          toolNames.add(toolName);
        });
      });
    },
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  );

function nameOf(value: unknown): string | undefined {
  const name: unknown = (value as { name?: unknown } | null)?.name;
  return typeof name === "string" ? name : undefined;
}

export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;
export type Registry = z.infer<typeof RegistrySchema>;
export type RegistryServer = z.infer<typeof ServerSchema>;
export type RegistryTool = z.infer<typeof ToolSchema>;
export type Rule = z.infer<typeof RuleSchema>;
export type TokenExchangeConfig = z.infer<typeof TokenExchangeSchema>;
export type Issuer = z.infer<typeof IssuerSchema>;
export type SecurityConfig = z.infer<typeof SecuritySchema>;
export type SecurityOverride = z.infer<typeof SecurityOverrideSchema>;
export type SecurityActionName = z.infer<typeof SecurityAction>;
export type ArgumentActionName = z.infer<typeof ArgumentAction>;
export type DlpAllowEntry = z.infer<typeof DlpAllowSchema>;
export type StateConfig = z.infer<typeof StateSchema>;
export type BudgetsConfig = z.infer<typeof BudgetsSchema>;
export type BudgetRule = z.infer<typeof BudgetRuleSchema>;
export type ApprovalsConfig = z.infer<typeof ApprovalsSchema>;
export type ApproverConfig = z.infer<typeof ApproverSchema>;
export type BrokerConfig = z.infer<typeof BrokerSchema>;

/**
 * The policy core is compiled from the shapes in policy/settings.ts, which policy/ owns so that it
 * never imports config/. These schemas' output must fit them: a schema change the core cannot
 * read stops compiling here, and tsc names the field.
 */
type OutputFits<PolicyShape, Output extends PolicyShape> = Output;
export type SchemasFitThePolicy = [
  OutputFits<PolicyConfig, GatewayConfig>,
  OutputFits<PolicyRegistry, Registry>,
];
