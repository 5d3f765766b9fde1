import { durationMs } from "../config/schema.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { Logger } from "../telemetry/logger.js";
import { describeFetchError, fetchFailureKind, fetchLiveTools, type FetchToolsOptions } from "./tool-list.js";

export type ToolLister = (url: string, options: FetchToolsOptions) => Promise<Record<string, unknown>[]>;

/** What one check of a server's tools/list found (also recorded in the engine's drift state). */
export type ToolListCheck =
  | { ok: true; upstream: string; tools: number; drifted: string[]; unlisted: string[] }
  /** `cause`: each upstream tried and why it failed (addresses included: for the log and admins). */
  | { ok: false; cause: string };

/** The name the gateway gives itself in `x-mcp-agent` when it lists a server's tools. */
export const PIN_VERIFIER_AGENT = "mcp-gateway-pin-check";

/**
 * The adapter half of "verify pins before the first call" (security.pins.verifyBeforeCall): when
 * the core answers `list_tools`, this fetches the server's tools/list from its registry upstreams
 * and hands it to the core, which compares every registered tool with its pin. The core decides
 * when a list is needed and what a missing one means; this only fetches. Concurrent requests for
 * the same server (and policy) share one fetch, so a burst of first calls costs one tools/list.
 */
export class PinVerifier {
  private readonly inflight = new Map<string, { engine: PolicyEngine; done: Promise<ToolListCheck> }>();

  constructor(
    private readonly logger: Logger,
    private readonly listTools: ToolLister = fetchLiveTools,
  ) {}

  /**
   * Resolves once the core has a fresh list or a recorded failure for `server`, with what the
   * check found; never rejects. `credential`: the per-agent header of a token-exchange server,
   * the requesting agent's.
   */
  verify(
    engine: PolicyEngine,
    server: string,
    credential?: Readonly<Record<string, string>>,
  ): Promise<ToolListCheck> {
    const current = this.inflight.get(server);
    if (current && current.engine === engine) return current.done;
    const done = this.fetch(engine, server, credential).finally(() => {
      if (this.inflight.get(server)?.done === done) this.inflight.delete(server);
    });
    this.inflight.set(server, { engine, done });
    return done;
  }

  private async fetch(
    engine: PolicyEngine,
    server: string,
    credential: Readonly<Record<string, string>> | undefined,
  ): Promise<ToolListCheck> {
    const upstreams = engine.registry.server(server)?.config.upstreams ?? [];
    // One deadline for every upstream tried: the request waits for this, and behind Envoy the
    // whole ext_proc reply must come within its message_timeout.
    const deadline = Date.now() + durationMs(engine.config.security.pins.listTimeout);
    const failures: string[] = [];
    const kinds = new Set<string>();
    for (const url of upstreams) {
      const timeoutMs = deadline - Date.now();
      if (timeoutMs <= 0) {
        failures.push(`${url}: not tried, the listTimeout was used up`);
        continue;
      }
      try {
        const tools = await this.listTools(url, {
          timeoutMs,
          // The server's own credential: a server that requires one would refuse the listing.
          headers: { ...engine.credentialHeaders(server), ...credential, "x-mcp-agent": PIN_VERIFIER_AGENT },
          clientName: PIN_VERIFIER_AGENT,
        });
        const { drifted, unlisted } = engine.security.recordToolList(server, tools);
        const fields = { server, upstream: url, tools: tools.length, drifted, unlisted };
        if (drifted.length > 0)
          this.logger.warn(fields, "pin check: tools differ from their pins; calls are refused");
        else this.logger.debug(fields, "pin check: tools/list checked");
        return { ok: true, upstream: url, tools: tools.length, drifted, unlisted };
      } catch (err) {
        failures.push(`${url}: ${describeFetchError(err)}`);
        kinds.add(fetchFailureKind(err));
      }
    }
    const cause = failures.length > 0 ? failures.join("; ") : "no upstreams";
    // The agent is told the kind of failure only: upstream addresses stay in the log.
    engine.security.recordToolListFailure(server, kinds.size > 0 ? [...kinds].join(", ") : "no upstreams");
    this.logger.warn({ server, cause }, "pin check: cannot list the server's tools; calls to it are refused");
    return { ok: false, cause };
  }
}
