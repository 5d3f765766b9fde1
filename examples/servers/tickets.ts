import { EventEmitter } from "node:events";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { serveMcp, type RunningServer } from "./http.js";

/**
 * Demo ticket tracker: list, read, create and delete tickets, kept in memory per server. Every
 * session is told about new tickets with a log notification that is not tied to any request, so
 * it travels on the session's server-to-client (GET) stream.
 */

const Status = z.enum(["open", "pending", "closed"]);
const Priority = z.enum(["low", "normal", "high"]);

interface Ticket {
  id: string;
  title: string;
  body: string;
  status: z.infer<typeof Status>;
  priority: z.infer<typeof Priority>;
}

const TicketShape = { id: z.string(), title: z.string(), status: Status, priority: Priority };

function seed(): Map<string, Ticket> {
  const tickets: Ticket[] = [
    { id: "T-1", title: "Cannot log in", body: "Reset link expired.", status: "open", priority: "high" },
    {
      id: "T-2",
      title: "Refund request",
      body: "Order 4411, damaged.",
      status: "pending",
      priority: "normal",
    },
    { id: "T-3", title: "Invoice address", body: "Wrong postcode.", status: "closed", priority: "low" },
  ];
  return new Map(tickets.map((t) => [t.id, t]));
}

export function createTicketsServer(
  store: Map<string, Ticket> = seed(),
  events: EventEmitter = new EventEmitter(),
): McpServer {
  const server = new McpServer({ name: "demo-tickets", version: "1.0.0" }, { capabilities: { logging: {} } });
  const announce = (t: Ticket) => {
    server
      .sendLoggingMessage({
        level: "info",
        logger: "tickets",
        data: { event: "ticket_created", id: t.id, title: t.title },
      })
      .catch(() => {});
  };
  events.on("created", announce);
  server.server.onclose = () => events.off("created", announce);
  const text = (value: unknown) => [{ type: "text" as const, text: JSON.stringify(value) }];
  const summary = (t: Ticket) => ({ id: t.id, title: t.title, status: t.status, priority: t.priority });

  server.registerTool(
    "list_tickets",
    {
      title: "List tickets",
      description: "List support tickets, optionally only those with a given status.",
      inputSchema: { status: Status.optional().describe("Only tickets with this status") },
      outputSchema: { tickets: z.array(z.object(TicketShape)) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ status }) => {
      const tickets = [...store.values()].filter((t) => !status || t.status === status).map(summary);
      return { content: text({ tickets }), structuredContent: { tickets } };
    },
  );

  server.registerTool(
    "get_ticket",
    {
      title: "Get ticket",
      description: "Fetch one ticket by id, with its description.",
      inputSchema: { id: z.string().describe("Ticket id such as T-1") },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ id }) => {
      const t = store.get(id);
      if (!t) return { content: [{ type: "text", text: `No ticket ${id}` }], isError: true };
      return { content: text(t) };
    },
  );

  server.registerTool(
    "create_ticket",
    {
      title: "Create ticket",
      description: "Open a new support ticket and return its id.",
      inputSchema: {
        title: z.string().min(3).describe("One-line summary"),
        body: z.string().optional().describe("Details"),
        priority: Priority.optional().describe("Defaults to normal"),
      },
      outputSchema: TicketShape,
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    async ({ title, body, priority }) => {
      let n = store.size + 1;
      while (store.has(`T-${n}`)) n++;
      const t: Ticket = {
        id: `T-${n}`,
        title,
        body: body ?? "",
        status: "open",
        priority: priority ?? "normal",
      };
      store.set(t.id, t);
      events.emit("created", t);
      return { content: text(summary(t)), structuredContent: summary(t) };
    },
  );

  server.registerTool(
    "delete_ticket",
    {
      title: "Delete ticket",
      description: "Permanently delete a ticket. This cannot be undone.",
      inputSchema: { id: z.string().describe("Ticket id") },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ id }) => {
      const existed = store.delete(id);
      return { content: [{ type: "text", text: existed ? `Deleted ${id}` : `No ticket ${id}` }] };
    },
  );

  return server;
}

export function startTicketsServer(port: number, host?: string): Promise<RunningServer> {
  // One store per running server, shared by its sessions.
  const store = seed();
  const events = new EventEmitter().setMaxListeners(0);
  return serveMcp(() => createTicketsServer(store, events), port, host);
}
