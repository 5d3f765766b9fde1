import type { GcTotals } from "./hosted.js";
import { Pool } from "undici";
import type { Operation } from "./load.js";
import type { Side } from "./targets/types.js";
import { PROTOCOL_VERSION, checkAnswer, type Workload } from "./workloads.js";

export interface HttpSideOptions {
  name: string;
  baseline: string | undefined;
  description: string;
  /** http://host:port */
  origin: string;
  /** Request path for a workload. */
  pathFor(workload: Workload): string;
  token: string;
  connections: number;
  /** The workload as this side sends it (names, answer type); default: the workload itself. */
  adapt?(workload: Workload): Workload;
  /** Headers of a workload's requests besides the defaults (a session id). */
  headersFor?(workload: Workload): Record<string, string>;
  /** CPU microseconds of the server process this side measures. */
  serverCpuMicros(): Promise<number>;
  serverGc?(): Promise<GcTotals>;
  /** Runs after the pool is closed (e.g. stop the server behind it). */
  onClose?: () => Promise<void>;
}

/** Ids stay 7 digits for 9 million requests, so an unchanged answer always has the same length. */
const FIRST_ID = 1_000_000;

/**
 * A side reached over HTTP (direct to the reference server, or through the edge): real JSON-RPC
 * bodies, a real bearer token, keep-alive connections from an undici pool. Every answer's
 * status, content type and byte length are checked against one fully parsed answer.
 */
export function httpSide(opts: HttpSideOptions): Side {
  const pool = new Pool(opts.origin, {
    connections: Math.max(opts.connections, 64),
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const common = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${opts.token}`,
    "mcp-protocol-version": PROTOCOL_VERSION,
  };
  let nextId = FIRST_ID;

  return {
    name: opts.name,
    baseline: opts.baseline,
    description: opts.description,
    serverCpuMicros: opts.serverCpuMicros,
    serverGc: opts.serverGc,

    async prepare(given: Workload): Promise<Operation> {
      const path = opts.pathFor(given);
      const workload = opts.adapt?.(given) ?? given;
      const headers = { ...common, ...opts.headersFor?.(given) };
      const id = nextId++;
      const res = await pool.request({ path, method: "POST", headers, body: workload.requestBody(id) });
      const text = await res.body.text();
      const type = res.headers["content-type"];
      const contentType = Array.isArray(type) ? type[0] : type;
      const problem = checkAnswer(workload, id, res.statusCode, contentType, text);
      if (problem) throw new Error(`${opts.name} ${workload.id}: ${problem}`);
      const expectedBytes = Buffer.byteLength(text);

      return async () => {
        const {
          statusCode,
          headers: h,
          body,
        } = await pool.request({
          path,
          method: "POST",
          headers,
          body: workload.requestBody(nextId++),
        });
        let bytes = 0;
        for await (const chunk of body) bytes += (chunk as Buffer).length;
        if (statusCode !== 200) throw new Error(`HTTP ${statusCode}`);
        const ct = h["content-type"];
        if (typeof ct !== "string" || !ct.startsWith(workload.responseType)) {
          throw new Error(`content-type ${String(ct)}`);
        }
        if (bytes !== expectedBytes) throw new Error(`answer of ${bytes} bytes, expected ${expectedBytes}`);
      };
    },

    async close() {
      await pool.close();
      await opts.onClose?.();
    },
  };
}
