import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { renderChart } from "./chart.js";
import { startHosted, type Hosted } from "./hosted.js";
import { closedLoop, openLoop, type Operation } from "./load.js";
import { MAX_LOAD, estimateSeconds, type BenchSettings } from "./options.js";
import { answerPost } from "./reference-server.js";
import { renderReport } from "./report.js";
import {
  ResultsSchema,
  checkTargets,
  compare,
  compareCpu,
  latencyResult,
  throughputResult,
  type BenchResults,
  type LatencyCell,
  type SideInfo,
  type ThroughputCell,
} from "./results.js";
import { prepareWorkdir, type Workdir } from "./setup.js";
import { Samples, percentile } from "./stats.js";
import type { BenchContext, Side, Target } from "./targets/index.js";
import { WORKLOADS, type Workload } from "./workloads.js";

/**
 * One benchmark run: reference server, bench config, targets, warm-up, rounds, results. The CLI
 * (run.ts) parses the options; tests call this directly with their own targets.
 */

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const REFERENCE_MODULE = new URL(`./reference-server${EXT}`, import.meta.url);
const DRAIN_MS = 5_000;

export interface RunOptions {
  settings: BenchSettings;
  /** How to reproduce the run, recorded in results.json. */
  command: string;
  targets: readonly Target[];
  /** Progress and skip lines (stderr in the CLI). */
  log: (line: string) => void;
  /** The summary table (stdout in the CLI). */
  print: (text: string) => void;
}

function gitInfo(): BenchResults["git"] {
  try {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8", stdio: "pipe" }).trim();
    const dirty =
      execFileSync("git", ["status", "--porcelain"], { encoding: "utf8", stdio: "pipe" }).trim() !== "";
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

function workloadInfo(w: Workload): BenchResults["workloads"][number] {
  const body = w.requestBody(1_000_000);
  return {
    id: w.id,
    title: w.title,
    requestBytes: Buffer.byteLength(body),
    responseBytes: Buffer.byteLength(answerPost(body, w.responseType === "text/event-stream").body),
    responseType: w.responseType,
  };
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const n = items.length;
  return items.map((_, i) => items[(i + by) % n]!);
}

function ms(v: number | null): string {
  return v === null ? "-" : `${v.toFixed(3)} ms`;
}

interface Measured {
  side: Side;
  ops: Map<string, Operation>;
}

async function startSides(
  run: RunOptions,
  ctx: BenchContext,
  infos: SideInfo[],
): Promise<{ sides: Side[]; failed: boolean }> {
  const progress = run.log;
  const sides: Side[] = [];
  let failed = false;
  for (const target of run.targets.filter((t) => run.settings.targets.includes(t.name))) {
    const why = target.unavailable();
    if (why) {
      progress(`${target.name}: skipped: ${why}`);
      for (const d of target.sides) {
        infos.push({
          ...d,
          baseline: d.baseline ?? null,
          target: target.name,
          status: "skipped",
          reason: why,
        });
      }
      continue;
    }
    try {
      const started = await target.start(ctx);
      sides.push(...started);
      for (const s of started) {
        infos.push({
          name: s.name,
          baseline: s.baseline ?? null,
          description: s.description,
          target: target.name,
          status: "measured",
          reason: null,
          cpuBaseline: target.sides.find((d) => d.name === s.name)?.cpuBaseline ?? null,
        });
      }
    } catch (err) {
      failed = true;
      const reason = `failed to start: ${(err as Error).message}`;
      progress(`${target.name}: ${reason}`);
      for (const d of target.sides) {
        infos.push({ ...d, baseline: d.baseline ?? null, target: target.name, status: "failed", reason });
      }
    }
  }
  return { sides, failed };
}

/** Checks one full answer per side and workload; a side that answers wrongly is not measured. */
async function prepareOps(
  sides: Side[],
  workloads: Workload[],
  infos: SideInfo[],
  progress: (line: string) => void,
): Promise<Measured[]> {
  const measured: Measured[] = [];
  for (const side of sides) {
    const ops = new Map<string, Operation>();
    try {
      for (const w of workloads) ops.set(w.id, await side.prepare(w));
      measured.push({ side, ops });
    } catch (err) {
      const info = infos.find((i) => i.name === side.name)!;
      info.status = "failed";
      info.reason = `wrong answer: ${(err as Error).message}`;
      progress(`${side.name}: ${info.reason}`);
    }
  }
  return measured;
}

async function measure(
  settings: BenchSettings,
  measured: Measured[],
  workloads: Workload[],
  progress: (line: string) => void,
) {
  const latency = new Map<string, LatencyCell>();
  const throughput = new Map<string, ThroughputCell>();

  for (const { side, ops } of measured) {
    for (const w of workloads) {
      // As many connections as the throughput phase, so none is opened while measuring.
      await closedLoop(ops.get(w.id)!, {
        concurrency: side.concurrency ?? settings.connections,
        durationMs: settings.warmupSeconds * 1000,
        drainMs: DRAIN_MS,
      });
    }
    progress(`warmed up: ${side.name}`);
  }

  // Sides compared with each other share a group (the root of their baseline chain: direct or
  // noop); a fraction of capacity is taken of the group's slowest side, so all of them run at
  // the same rates and none of them builds a backlog.
  const groupOf = (name: string): string => {
    const side = measured.find((m) => m.side.name === name)?.side;
    return side?.baseline && measured.some((m) => m.side.name === side.baseline)
      ? groupOf(side.baseline)
      : name;
  };
  const loads = [
    ...settings.rates.map((rate) => ({ label: `${rate}/s`, rate, fraction: null as number | null })),
    ...settings.loadFractions.map((f) => ({
      label: `${Math.round(f * 100)}%`,
      rate: 0,
      fraction: f as number | null,
    })),
  ];

  for (let round = 0; round < settings.rounds; round++) {
    const order = rotate(measured, round);
    const tag = `round ${round + 1}/${settings.rounds}`;
    for (const w of workloads) {
      // Capacity first: the latency phases below are placed relative to it.
      const capacity = new Map<string, number>();
      for (const { side, ops } of order) {
        const concurrency = side.concurrency ?? settings.connections;
        const cpu0 = await side.serverCpuMicros();
        const client0 = process.cpuUsage();
        const r = await closedLoop(ops.get(w.id)!, {
          concurrency,
          durationMs: settings.throughputSeconds * 1000,
          drainMs: DRAIN_MS,
        });
        const client = process.cpuUsage(client0);
        const cpuMs = ((await side.serverCpuMicros()) - cpu0) / 1000;
        capacity.set(side.name, r.perSecond);
        const key = `${side.name}|${w.id}`;
        const cell: ThroughputCell = throughput.get(key) ?? {
          side: side.name,
          workload: w.id,
          connections: concurrency,
          elapsedMs: 0,
          serverCpuMs: 0,
          clientCpuMs: 0,
          ok: 0,
          errors: 0,
          stuck: 0,
          perRound: [],
          cpuUsRounds: [],
          latency: new Samples(),
          firstError: undefined,
        };
        cell.elapsedMs += r.elapsedMs;
        cell.serverCpuMs += cpuMs;
        cell.clientCpuMs += (client.user + client.system) / 1000;
        cell.ok += r.ok;
        cell.errors += r.errors;
        cell.stuck += r.stuck;
        cell.perRound.push(r.perSecond);
        if (r.ok > 0) cell.cpuUsRounds.push((cpuMs * 1000) / r.ok);
        cell.latency.addAll(r.latency);
        cell.firstError ??= r.firstError;
        throughput.set(key, cell);
        progress(
          `${tag} throughput ${w.id} ${side.name}: ${Math.round(r.perSecond)} req/s, ` +
            `${r.ok > 0 ? ((cpuMs * 1000) / r.ok).toFixed(1) : "-"} us CPU/req, server ${(cpuMs / r.elapsedMs).toFixed(2)} cores, ` +
            `load generator ${((client.user + client.system) / 1000 / r.elapsedMs).toFixed(2)} cores` +
            (r.errors + r.stuck ? `, ${r.errors + r.stuck} errors (${r.firstError ?? "stuck"})` : ""),
        );
      }
      const groupCapacity = (name: string) =>
        Math.min(
          ...measured
            .filter((m) => groupOf(m.side.name) === groupOf(name))
            .map((m) => capacity.get(m.side.name) ?? 0),
        );

      for (const load of loads) {
        for (const { side, ops } of order) {
          const key = `${side.name}|${w.id}|${load.label}`;
          const cell: LatencyCell = latency.get(key) ?? {
            side: side.name,
            workload: w.id,
            load: load.label,
            fraction: load.fraction,
            roundRates: [],
            roundP50: [],
            roundP99: [],
            roundCpuUs: [],
            skippedRounds: 0,
            gcCount: 0,
            gcMs: 0,
            gcMaxMs: 0,
            scheduled: 0,
            sent: 0,
            ok: 0,
            errors: 0,
            timedOut: 0,
            sendLag: new Samples(),
            latency: new Samples(),
            service: new Samples(),
            serverCpuMs: 0,
            firstError: undefined,
          };
          latency.set(key, cell);
          const rate =
            load.fraction === null
              ? load.rate
              : Math.max(1, Math.round(load.fraction * groupCapacity(side.name)));
          // A fixed rate near or over a side's capacity would measure its queue, not its latency;
          // over the capacity of the slowest side it is compared with, it is no comparison. The
          // gRPC pair shares one more limit: the Envoy-role front runs in this process with the load
          // generator, and at 500/s beside the do-nothing server (587-700/s measured) its backlog
          // reached hundreds of exchanges and their gRPC connection failed (503s, exit 1).
          if (load.fraction === null && rate > MAX_LOAD * groupCapacity(side.name)) {
            cell.skippedRounds++;
            progress(
              `${tag} latency ${load.label} ${w.id} ${side.name}: skipped, over ${MAX_LOAD * 100}% of the capacity ` +
                `of the slowest side it is compared with (${Math.round(groupCapacity(side.name))}/s)`,
            );
            continue;
          }
          const cpu0 = await side.serverCpuMicros();
          const gc0 = await side.serverGc?.();
          const r = await openLoop(ops.get(w.id)!, {
            ratePerSecond: rate,
            durationMs: settings.latencySeconds * 1000,
            drainMs: DRAIN_MS,
          });
          // GC first: each ask restarts the longest-pause figure.
          const gc1 = await side.serverGc?.();
          const cpuMs = ((await side.serverCpuMicros()) - cpu0) / 1000;
          if (gc0 && gc1) {
            cell.gcCount += gc1.count - gc0.count;
            cell.gcMs += gc1.totalMs - gc0.totalMs;
            cell.gcMaxMs = Math.max(cell.gcMaxMs, gc1.maxMs);
          }
          cell.scheduled += r.scheduled;
          cell.sent += r.sent;
          cell.ok += r.ok;
          cell.errors += r.errors;
          cell.timedOut += r.timedOut;
          cell.sendLag.addAll(r.sendLag);
          cell.latency.addAll(r.latency);
          cell.service.addAll(r.service);
          cell.serverCpuMs += cpuMs;
          cell.firstError ??= r.firstError;
          const sorted = r.latency.sorted();
          const p50 = percentile(sorted, 50);
          const p99 = percentile(sorted, 99);
          cell.roundRates.push(rate);
          if (p50 !== null && p99 !== null) {
            cell.roundP50.push(p50);
            cell.roundP99.push(p99);
          } else {
            // No answer to take a latency from: a rate so low (a fraction of a capacity measured
            // on a loaded machine) that the round scheduled nothing, or every request failed.
            cell.skippedRounds++;
          }
          if (r.ok > 0) cell.roundCpuUs.push((cpuMs * 1000) / r.ok);
          progress(
            `${tag} latency ${load.label} (${rate}/s) ${w.id} ${side.name}: p50 ${ms(p50)}, p99 ${ms(p99)}` +
              (r.errors + r.timedOut
                ? `, ${r.errors + r.timedOut} errors (${r.firstError ?? "timeout"})`
                : ""),
          );
        }
      }
    }
  }
  return { latency: [...latency.values()], throughput: [...throughput.values()] };
}

/** Runs the benchmark; resolves with the exit code (1 when a side failed or requests failed). */
export async function runBench(run: RunOptions): Promise<number> {
  const { settings, command } = run;
  const progress = run.log;
  const startedAt = new Date();
  const loadAverageAtStart = loadavg().map((l) => Math.round(l * 100) / 100);
  const workloads = settings.workloads.map((id) => WORKLOADS[id]);
  let reference: Hosted | undefined;
  let work: Workdir | undefined;
  let sides: Side[] = [];
  const removeWork = () => work?.remove();
  try {
    reference = await startHosted(REFERENCE_MODULE, "serveReference", {}, "reference server");
    const referenceOrigin = `http://127.0.0.1:${reference.ports.http}`;
    work = await prepareWorkdir(referenceOrigin);
    // The temp dir holds a private key: gone even if the run is cut short.
    process.on("exit", removeWork);
    const ctx: BenchContext = {
      workdir: work.dir,
      configFile: work.configFile,
      token: work.token,
      referenceOrigin,
      referenceCpuMicros: reference.cpuMicros,
      referenceGc: reference.gc,
      connections: settings.connections,
    };
    const infos: SideInfo[] = [];
    const started = await startSides(run, ctx, infos);
    sides = started.sides;
    const measured = await prepareOps(sides, workloads, infos, progress);

    const estimate = estimateSeconds(settings, measured.length);
    progress(
      `measuring ${measured.map((m) => m.side.name).join(", ") || "nothing"} on ${workloads.length} workloads: about ${Math.ceil(estimate)} s`,
    );
    // However the servers behave, the run ends.
    const watchdog = setTimeout(
      () => {
        progress("bench: over its time budget, stopping");
        process.exit(3);
      },
      (estimate * 2 + 60) * 1000,
    );
    watchdog.unref();
    const cells = await measure(settings, measured, workloads, progress);
    clearTimeout(watchdog);

    const latency = cells.latency.map(latencyResult);
    const throughput = cells.throughput.map(throughputResult);
    const comparisons = compare(infos, latency, throughput);
    const cpuComparisons = compareCpu(infos, throughput);
    const finishedAt = new Date();
    const results: BenchResults = ResultsSchema.parse({
      schema: "mcp-gateway-bench/2",
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
      command,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model.trim() ?? "unknown",
        memoryMiB: Math.round(totalmem() / 1048576),
        platform: process.platform,
        arch: process.arch,
        node: process.versions.node,
        loadAverageAtStart,
      },
      git: gitInfo(),
      settings: {
        quick: settings.quick,
        rates: settings.rates,
        loadFractions: settings.loadFractions,
        latencySeconds: settings.latencySeconds,
        throughputSeconds: settings.throughputSeconds,
        warmupSeconds: settings.warmupSeconds,
        connections: settings.connections,
        rounds: settings.rounds,
        targets: settings.targets,
        workloads: settings.workloads,
      },
      sides: infos,
      workloads: workloads.map(workloadInfo),
      latency,
      throughput,
      comparisons,
      cpuComparisons,
      targets: checkTargets(settings.rates, comparisons, throughput, cpuComparisons),
    });
    mkdirSync(settings.out, { recursive: true });
    writeFileSync(join(settings.out, "results.json"), JSON.stringify(results, null, 2) + "\n");
    writeFileSync(join(settings.out, "results.svg"), renderChart(results));
    run.print(renderReport(results));
    progress(`wrote ${join(settings.out, "results.json")} and results.svg`);

    const requestErrors = [...latency, ...throughput].some(
      (x) => x.errors > 0 || ("timedOut" in x ? x.timedOut : x.stuck) > 0,
    );
    const sideFailed = infos.some((i) => i.status === "failed");
    if (requestErrors) progress("bench: some requests failed; see the errors above");
    return started.failed || sideFailed || requestErrors ? 1 : 0;
  } finally {
    for (const side of sides) await side.close().catch(() => undefined);
    await reference?.close();
    removeWork();
    process.off("exit", removeWork);
  }
}
