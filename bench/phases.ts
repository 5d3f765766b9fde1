/**
 * Where an Envoy-role exchange spends its time, phase by phase, for the ext-service and the
 * do-nothing server in the same run: the Check call, then each ext_proc reply measured from the
 * message that asked for it (for streamed body chunks, from the previous reply, as they are
 * pipelined). Medians and p90 in ms.
 *
 *   npm run build && node dist/bench/phases.js [--workload call_64k_sse] [--concurrency 1]
 *                                              [--rate 200] [--seconds 3] [--rounds 2]
 *
 * Without --rate: a closed loop of --concurrency requests; with it: an open loop at that rate.
 */
import { parseArgs } from "node:util";
import { EnvoyRoleClient, ProcessCall } from "../ext-service/src/envoy/envoy-role-client.js";
import type { ProcessingRequest } from "../ext-service/src/envoy/types.js";
import { startHosted } from "./hosted.js";
import { closedLoop, openLoop, type Operation } from "./load.js";
import { prepareWorkdir } from "./setup.js";
import { target } from "./targets/ext-service.js";
import { runScript } from "./script.js";
import { WORKLOADS, type WorkloadId } from "./workloads.js";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const REFERENCE_MODULE = new URL(`./reference-server${EXT}`, import.meta.url);

const { values } = parseArgs({
  options: {
    workload: { type: "string", default: "call_64k_sse" },
    concurrency: { type: "string", default: "1" },
    rate: { type: "string" },
    seconds: { type: "string", default: "3" },
    rounds: { type: "string", default: "2" },
  },
});

const samples = new Map<string, number[]>();
function record(key: string, ms: number): void {
  let list = samples.get(key);
  if (!list) samples.set(key, (list = []));
  list.push(ms);
}

/** Per stream: when the last message went out or the last reply came in, and chunks answered. */
const clocks = new WeakMap<ProcessCall, { at: number; kind: string; chunk: number }>();
const send = ProcessCall.prototype.send;
ProcessCall.prototype.send = function (this: ProcessCall, request: ProcessingRequest) {
  // The client sets the oneof's field, not its name (`request`), which only decoding fills in.
  const kind = Object.keys(request).find((k) => k !== "metadata_context") ?? "unknown";
  clocks.set(this, { at: performance.now(), kind, chunk: 0 });
  send.call(this, request);
};
const next = ProcessCall.prototype.next;
ProcessCall.prototype.next = async function (this: ProcessCall, timeoutMs?: number) {
  const event = await next.call(this, timeoutMs);
  const clock = clocks.get(this);
  if (clock) {
    const now = performance.now();
    const name = event.kind === "reply" ? (event.reply.response ?? "unknown") : event.kind;
    record(clock.kind === "response_body" ? `${name}#${++clock.chunk}` : name, now - clock.at);
    clock.at = now;
  }
  return event;
};
const check = EnvoyRoleClient.prototype.check;
EnvoyRoleClient.prototype.check = async function (this: EnvoyRoleClient, request) {
  const started = performance.now();
  const response = await check.call(this, request);
  record("check", performance.now() - started);
  return response;
};

function quantile(list: ArrayLike<number>, q: number): number {
  const sorted = Array.from(list).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const workload = WORKLOADS[values.workload as WorkloadId];
  if (!workload) throw new Error(`unknown workload ${values.workload}`);
  const durationMs = Number(values.seconds) * 1000;
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  const concurrency = Number(values.concurrency);
  const reference = await startHosted(REFERENCE_MODULE, "serveReference", {}, "reference server");
  const referenceOrigin = `http://127.0.0.1:${reference.ports.http}`;
  const work = await prepareWorkdir(referenceOrigin);
  const sides = await target.start({
    workdir: work.dir,
    configFile: work.configFile,
    token: work.token,
    referenceOrigin,
    referenceCpuMicros: reference.cpuMicros,
    connections: concurrency,
  });
  try {
    const ops = new Map<string, Operation>();
    for (const side of sides) ops.set(side.name, await side.prepare(workload));
    for (let round = 1; round <= Number(values.rounds); round++) {
      for (const side of sides) {
        const op = ops.get(side.name)!;
        await closedLoop(op, { concurrency: 4, durationMs: 1000, drainMs: 5000 });
        samples.clear();
        const started = performance.now();
        const result =
          rate === undefined
            ? await closedLoop(op, { concurrency, durationMs, drainMs: 5000 })
            : await openLoop(op, { ratePerSecond: rate, durationMs, drainMs: 5000 });
        const elapsed = performance.now() - started;
        const latency = result.latency.sorted();
        const load = rate === undefined ? `c=${concurrency}` : `rate=${rate}`;
        process.stdout.write(
          `round ${round} ${side.name} ${workload.id} ${load}: ${result.ok} ok (${Math.round((result.ok * 1000) / elapsed)}/s), ` +
            `${result.errors} errors, median ${quantile(latency, 0.5).toFixed(3)} ms, p90 ${quantile(latency, 0.9).toFixed(3)} ms\n` +
            `  ${[...samples].map(([k, v]) => `${k} ${quantile(v, 0.5).toFixed(2)}/${quantile(v, 0.9).toFixed(2)}`).join(" | ")}\n`,
        );
      }
    }
  } finally {
    for (const side of sides) await side.close().catch(() => undefined);
    await reference.close();
    work.remove();
  }
}

runScript(main);
