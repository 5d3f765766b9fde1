import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { describe, expect, it } from "vitest";
import { waitFor } from "../e2e/harness.js";
import { connectModern, demoPlane } from "./support.js";

/**
 * Issue 14, found by a user trial: the aggregated endpoint advertised `completions` and `logging`
 * whatever its servers offered, and completion/complete to a server without completions answered
 * a bare -32601. It now advertises what at least one server of the agent's view offers, routes
 * completion/complete to the server that owns the prompt or template, names a server that offers
 * none, and sends logging/setLevel only to the servers that offer logging. Demo servers: kb
 * (completions, both eras), tickets (logging, 2025 only), deploy (neither).
 */

type Era = "1.x" | "2.x (2025)" | "2.x (2026-07-28)";

/** What the tests do with a connected client of any SDK major and era. */
interface Connected {
  capabilities: Record<string, unknown>;
  complete(ref: Record<string, string>, argument: { name: string; value: string }): Promise<string[]>;
  setLevel(level: "info" | "error"): Promise<unknown>;
  call(name: string, args: Record<string, unknown>): Promise<unknown>;
  close(): Promise<void>;
}

interface RpcError {
  code: number;
  message: string;
  data?: { reason?: string; request_id?: string; server?: string };
}

async function connect(
  era: Era,
  url: string,
  token: string,
  onLog?: (data: unknown) => void,
): Promise<Connected> {
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  if (era === "1.x") {
    const client = new Client({ name: "v1", version: "1.0.0" });
    client.onerror = () => undefined;
    if (onLog) client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => onLog(n.params.data));
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit }));
    return {
      capabilities: (client.getServerCapabilities() ?? {}) as Record<string, unknown>,
      complete: async (ref, argument) =>
        (await client.complete({ ref: ref as never, argument })).completion.values,
      setLevel: (level) => client.setLoggingLevel(level),
      call: (name, args) => client.callTool({ name, arguments: args }),
      close: () => client.close(),
    };
  }
  const client =
    era === "2.x (2025)" ? new ClientV2({ name: "v2", version: "1.0.0" }) : await connectModern(url, token);
  client.onerror = () => undefined;
  if (era === "2.x (2025)") {
    if (onLog) client.setNotificationHandler("notifications/message", (n) => onLog(n.params.data));
    await client.connect(new TransportV2(new URL(url), { requestInit }));
    expect(client.getProtocolEra()).not.toBe("modern");
  }
  return {
    capabilities: (client.getServerCapabilities() ?? {}) as Record<string, unknown>,
    complete: async (ref, argument) =>
      (await client.complete({ ref: ref as never, argument })).completion.values,
    setLevel: (level) => client.setLoggingLevel(level),
    call: (name, args) => client.callTool({ name, arguments: args }),
    close: () => client.close(),
  };
}

const ERAS: Era[] = ["1.x", "2.x (2025)", "2.x (2026-07-28)"];

describe.each(["edge", "envoy"] as const)("the aggregate's capabilities, %s plane", (plane) => {
  const demo = demoPlane(plane);

  it.each(ERAS)(
    "%s: advertises completions and logging only when a server of the view offers them",
    async (era) => {
      // ops-bot reaches deploy only, which offers neither.
      const ops = await connect(era, demo.url(), demo.gw.token("ops-bot"));
      // research-bot reaches kb (completions) and tickets (logging).
      const research = await connect(era, demo.url(), demo.gw.token("research-bot"));
      try {
        expect(ops.capabilities).toHaveProperty("tools");
        expect(ops.capabilities).not.toHaveProperty("completions");
        expect(ops.capabilities).not.toHaveProperty("logging");
        expect(research.capabilities).toHaveProperty("completions");
        expect(research.capabilities).toHaveProperty("logging");
        // Not advertised, not served: refused with a reason and audited, not a bare -32601.
        const err = (await ops
          .complete({ type: "ref/prompt", name: "deploy__anything" }, { name: "x", value: "" })
          .then(
            () => undefined,
            (e: unknown) => e,
          )) as RpcError | undefined;
        // 2025: the broker answers in-band; 2026-07-28: HTTP 404, as for any method not served
        // (SEP-2575). Either way with the reason and its record's id.
        const refused =
          era === "2.x (2026-07-28)"
            ? (
                JSON.parse((err as { data?: { text?: string } } | undefined)?.data?.text ?? "{}") as {
                  error?: RpcError;
                }
              ).error
            : err;
        expect(refused?.code).toBe(-32601);
        expect(refused?.data?.reason).toBe("method_unknown");
        const records = await demo.gw.log.auditFor(refused!.data!.request_id!);
        expect(records[0]).toMatchObject({ decision: "deny", reasons: ["method_unknown"], plane });
      } finally {
        await Promise.allSettled([ops.close(), research.close()]);
      }
    },
  );

  it.each(ERAS)(
    "%s: completion/complete goes to the server that owns the prompt or template; a server without completions is named",
    async (era) => {
      const mcp = await connect(era, demo.url(), demo.gw.token("research-bot"));
      try {
        // The prompt's name and the template's URI lose their prefix on the way to kb.
        expect(
          await mcp.complete(
            { type: "ref/prompt", name: "kb__answer_from_kb" },
            { name: "question", value: "ref" },
          ),
        ).toEqual(["Refund policy"]);
        expect(
          await mcp.complete(
            { type: "ref/resource", uri: "kb.kb://articles/{id}" },
            { name: "id", value: "kb-10" },
          ),
        ).toEqual(["kb-101", "kb-102", "kb-103", "kb-104", "kb-105"]);
        // tickets is in research-bot's view but offers no completions: said so, naming it.
        const err = (await mcp
          .complete({ type: "ref/prompt", name: "tickets__summary" }, { name: "x", value: "" })
          .then(
            () => undefined,
            (e: unknown) => e,
          )) as RpcError | undefined;
        expect(err?.code).toBe(-32601);
        expect(err?.message).toContain("tickets offers no completions");
        expect(err?.data).toMatchObject({ reason: "method_unknown", server: "tickets" });
        const records = await demo.gw.log.auditFor(err!.data!.request_id!);
        expect(records).toHaveLength(1);
        expect(records[0]).toMatchObject({
          decision: "deny",
          reasons: ["method_unknown"],
          causes: ["not_offered"],
        });
        // deploy is outside research-bot's view: unknown, as a name outside the view always is.
        const outside = (await mcp
          .complete({ type: "ref/prompt", name: "deploy__anything" }, { name: "x", value: "" })
          .then(
            () => undefined,
            (e: unknown) => e,
          )) as RpcError | undefined;
        expect(outside?.data?.reason).toBe("prompt_unknown");
      } finally {
        await mcp.close();
      }
    },
  );

  it.each(["1.x", "2.x (2025)"] as const)(
    "%s: logging/setLevel goes to each server of the view that offers logging; their messages reach the client",
    async (era) => {
      const logs: unknown[] = [];
      // support-bot reaches kb (no logging) and tickets (logging), and may create tickets.
      const mcp = await connect(era, demo.url(), demo.gw.token("support-bot"), (data) => logs.push(data));
      const before = demo.gw.log.audits.length;
      try {
        await mcp.setLevel("info");
        const hops = () =>
          demo.gw.log.audits
            .slice(before)
            .filter((a) => a.methods.includes("logging/setLevel") && a.server !== null);
        await waitFor(() => hops().length > 0, 5_000, "the setLevel hop's record");
        expect(hops().map((a) => [a.server, a.decision])).toEqual([["tickets", "allow"]]);
        // tickets announces a new ticket to every session, on its GET stream: relayed on the client's.
        await mcp.call("tickets__create_ticket", { title: "Printer on fire" });
        await waitFor(
          () => logs.some((d) => JSON.stringify(d).includes("Printer on fire")),
          5_000,
          "the ticket's log message",
        );
      } finally {
        await mcp.close();
      }
    },
  );
});
