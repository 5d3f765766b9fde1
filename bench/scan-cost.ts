/**
 * Scan cost of the security policies (issue 5): how long the core spends inspecting one tool
 * result with every detector on (DLP: all secret and PII detectors; injection: normalisation,
 * decoding and every rule).
 *
 *   npx tsx bench/scan-cost.ts
 *
 * Prints medians (and p90) for a 64 KB tool result and a clean 1 KB result, both for the scan
 * alone (SecurityPolicy.inspectServerMessage on a parsed message) and for the whole response
 * path (ResponseTransformer.transformJson: parse, scan, re-serialise), and where the 64 KB scan
 * spends its time (DLP; normalisation; the injection keyword prefilter; the rules, which is the
 * injection scan less the other two). Also a 10 MB result and a false-positive check on the
 * READMEs of installed packages (text nobody tuned the rules on).
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GatewayConfigSchema, RegistrySchema } from "../ext-service/src/config/schema.js";
import { classifyMessage, type JsonRpcMessage } from "../ext-service/src/mcp/jsonrpc.js";
import { PolicyEngine } from "../ext-service/src/policy/engine.js";
import { idKey } from "../ext-service/src/policy/exchange.js";
import { conceptWorkPerChar, scanConcepts } from "../ext-service/src/policy/concepts.js";
import { injectionPrefilter, joinWrappedLines, scanInjection } from "../ext-service/src/policy/injection.js";
import { DlpScanner } from "../ext-service/src/policy/dlp.js";
import { normalizeForScan } from "../ext-service/src/policy/normalize.js";
import { benignTexts, CLEAN_1K, repeatedToSize } from "./benign-corpus.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

const config = GatewayConfigSchema.parse({ registry: "registry.yaml", auth: { mode: "optional" } });
const registry = RegistrySchema.parse({
  version: "bench",
  servers: [
    {
      name: "kb",
      upstreams: ["http://127.0.0.1:1/mcp"],
      tools: [{ name: "search", description: "Search the knowledge base." }],
    },
  ],
});
const engine = new PolicyEngine({ config, registry, configFile: join(root, "gateway.yaml") });

/**
 * Benign corpus text repeated up to `size` characters. Entries the scanner flags (the corpus's
 * known false positive) or that hold PII are left out, so the measured result passes and every
 * string is fully scanned.
 */
function corpusText(size: number): string {
  const dlp = new DlpScanner();
  const passing = benignTexts().filter(
    (t) => scanInjection(t).tier === undefined && dlp.scan(t).length === 0,
  );
  return repeatedToSize(passing, size);
}

function toolResult(id: number, text: string): Record<string, unknown> {
  return { jsonrpc: "2.0", id, result: { content: [{ type: "text", text }], isError: false } };
}

function exchangeFor(id: number) {
  const exchange = engine.newExchange("POST");
  exchange.server = "kb";
  exchange.pending.set(idKey(id), { method: "tools/call", target: "search" });
  return exchange;
}

interface Stats {
  median: number;
  p90: number;
}

function measure(fn: () => void, runs: number): Stats {
  for (let i = 0; i < Math.min(200, runs); i++) fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)]!, p90: times[Math.floor(times.length * 0.9)]! };
}

function fmt(s: Stats): string {
  const unit = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} us`);
  return `median ${unit(s.median)}  p90 ${unit(s.p90)}`;
}

function scanOnly(message: JsonRpcMessage, id: number): () => void {
  return () => {
    const exchange = exchangeFor(id);
    engine.security.inspectServerMessage(exchange, message, exchange.pending.get(idKey(id)));
  };
}

function wholePath(body: Uint8Array, id: number): () => void {
  return () => {
    const exchange = exchangeFor(id);
    engine.responseTransformer(exchange, "application/json", 200).transformJson(body);
  };
}

/** A real document nobody tuned the rules on: an installed package's README, repeated to size. */
function readmeText(size: number): string | undefined {
  const file = join(root, "node_modules/undici/README.md");
  if (!existsSync(file)) return undefined;
  let t = readFileSync(file, "utf8");
  while (t.length < size) t += "\n\n" + t;
  return t.slice(0, size);
}

const big = corpusText(64 * 1024);
// A few findings so redaction has work to do, as a real result would.
const big64 = big.slice(0, 20_000) + " contact alice@example.com " + big.slice(20_000, 65_536 - 40);
const msg64 = classifyMessage(toolResult(1, big64)) as JsonRpcMessage;
const msg1k = classifyMessage(toolResult(2, CLEAN_1K)) as JsonRpcMessage;
const body64 = new TextEncoder().encode(JSON.stringify(toolResult(1, big64)));
const body1k = new TextEncoder().encode(JSON.stringify(toolResult(2, CLEAN_1K)));

process.stdout.write(`node ${process.version}, ${process.platform}/${process.arch}\n`);
process.stdout.write(`64 KB tool result, scan only:          ${fmt(measure(scanOnly(msg64, 1), 300))}\n`);
process.stdout.write(`64 KB tool result, transformJson:      ${fmt(measure(wholePath(body64, 1), 300))}\n`);
const readme = readmeText(64 * 1024);
if (readme) {
  const msgReadme = classifyMessage(toolResult(4, readme)) as JsonRpcMessage;
  process.stdout.write(
    `64 KB README (undici), scan only:       ${fmt(measure(scanOnly(msgReadme, 4), 300))}\n`,
  );
}
{
  const dlp = new DlpScanner();
  const layers = normalizeForScan(big64).layers;
  const stage = (fn: () => void) => measure(fn, 300);
  const d = stage(() => dlp.scan(big64));
  const n = stage(() => normalizeForScan(big64));
  const k = stage(() => layers.forEach((l) => injectionPrefilter(l.text)));
  const c = stage(() => layers.forEach((l) => scanConcepts(joinWrappedLines(l.text))));
  const all = stage(() => scanInjection(big64));
  const us = (s: Stats) => `${s.median.toFixed(0)} us`;
  process.stdout.write(
    `64 KB scan by stage (medians): DLP ${us(d)}, normalise ${us(n)}, keyword prefilter ${us(k)}, ` +
      `concept rules ${us(c)}, phrase rules ~${(all.median - n.median - k.median - c.median).toFixed(0)} us ` +
      `(injection in all ${us(all)})\n`,
  );
  process.stdout.write(
    `concept scan steps per character (load-independent): 64 KB ${conceptWorkPerChar(big64).toFixed(2)}, ` +
      `clean 1 KB ${conceptWorkPerChar(CLEAN_1K).toFixed(2)}\n`,
  );
}
{
  // DLP against a baseline measured in the same run and interleaved with it: a bare loop reading
  // every character of the same text. On a machine shared with other work the absolute times
  // move a lot; the ratio much less.
  const dlp = new DlpScanner();
  const bareLoop = (text: string) => () => {
    let sum = 0;
    for (let i = 0; i < text.length; i++) sum += text.charCodeAt(i);
    if (sum === -1) process.stdout.write("");
  };
  for (const [label, text, runs] of [
    ["64 KB", big64, 60],
    ["clean 1 KB", CLEAN_1K, 2000],
  ] as const) {
    const ratios: number[] = [];
    let dlpUs = 0;
    let loopUs = 0;
    for (let round = 0; round < 5; round++) {
      const d = measure(() => dlp.scan(text), runs).median;
      const l = measure(bareLoop(text), runs).median;
      ratios.push(d / l);
      dlpUs += d / 5;
      loopUs += l / 5;
    }
    ratios.sort((a, b) => a - b);
    process.stdout.write(
      `DLP (${dlp.kinds.length} kinds, ${dlp.anchors.length} anchors) on ${label}: ${dlpUs.toFixed(1)} us, ` +
        `a bare character loop ${loopUs.toFixed(1)} us; ratio median ${ratios[2]!.toFixed(1)} ` +
        `(${ratios[0]!.toFixed(1)}-${ratios[4]!.toFixed(1)} over 5 rounds)\n`,
    );
  }
}
process.stdout.write(
  `clean 1 KB, injection scan alone:      ${fmt(measure(() => scanInjection(CLEAN_1K), 5000))}\n`,
);
process.stdout.write(
  `64 KB, injection scan alone:           ${fmt(measure(() => scanInjection(big64), 300))}\n`,
);
process.stdout.write(`clean 1 KB tool result, scan only:     ${fmt(measure(scanOnly(msg1k, 2), 5000))}\n`);
process.stdout.write(`clean 1 KB tool result, transformJson: ${fmt(measure(wholePath(body1k, 2), 5000))}\n`);

const tenMb = new TextEncoder().encode(
  JSON.stringify(toolResult(3, corpusText(10 * 1024 * 1024 - 200) + " key AKIAIOSFODNN7ABCDEFG")),
);
function tenMbRun(label: string, e: PolicyEngine): void {
  const exchange = e.newExchange("POST");
  exchange.server = "kb";
  exchange.pending.set(idKey(3), { method: "tools/call", target: "search" });
  const t0 = performance.now();
  const out = e.responseTransformer(exchange, "application/json", 200).transformJson(tenMb);
  const ms = performance.now() - t0;
  const redacted =
    out !== undefined && new TextDecoder().decode(out).includes("[REDACTED:aws_access_key_id]");
  process.stdout.write(
    `10 MB tool result, ${label}: ${ms.toFixed(0)} ms (one run; outcome: ` +
      `${exchange.reasons.length ? exchange.reasons.join(", ") : redacted ? "passed, secret at the end redacted" : "passed"})\n`,
  );
}
tenMbRun("default limits        ", engine);
const unlimited = new PolicyEngine({
  config: GatewayConfigSchema.parse({
    registry: "registry.yaml",
    auth: { mode: "optional" },
    security: { maxScanChars: 16_777_216 },
  }),
  registry,
  configFile: join(root, "gateway.yaml"),
});
tenMbRun("maxScanChars 16 MiB   ", unlimited);

// Out-of-sample false positives: paragraphs of installed packages' READMEs.
const modules = join(root, "node_modules");
let paragraphs = 0;
let flagged = 0;
if (existsSync(modules)) {
  for (const d of readdirSync(modules)) {
    const pkgs = d.startsWith("@") ? readdirSync(join(modules, d)).map((x) => join(d, x)) : [d];
    for (const p of pkgs) {
      const file = ["README.md", "readme.md", "Readme.md"].map((n) => join(modules, p, n)).find(existsSync);
      if (!file) continue;
      for (const para of readFileSync(file, "utf8").split(/\n\s*\n/)) {
        if (para.trim().length < 20) continue;
        paragraphs++;
        if (scanInjection(para).tier !== undefined) flagged++;
      }
    }
  }
  process.stdout.write(
    `injection findings on ${paragraphs} README paragraphs of installed packages: ${flagged} ` +
      `(${((flagged / Math.max(paragraphs, 1)) * 100).toFixed(3)}%)\n`,
  );
}

// And 4 KB chunks of the installed packages' JavaScript/TypeScript sources and docs.
if (existsSync(modules)) {
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (files.length >= 3000 || depth > 6) return;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if ([".js", ".mjs", ".ts", ".md"].includes(extname(e.name)) && statSync(p).size < 200_000)
        files.push(p);
    }
  };
  walk(modules, 0);
  let chunks = 0;
  let hits = 0;
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    for (let i = 0; i < text.length; i += 4096) {
      chunks++;
      if (scanInjection(text.slice(i, i + 4096)).tier !== undefined) hits++;
    }
  }
  process.stdout.write(
    `injection findings on ${chunks} 4 KB chunks of ${files.length} installed source/doc files: ${hits} ` +
      `(${((hits / Math.max(chunks, 1)) * 100).toFixed(3)}%)\n`,
  );
}
