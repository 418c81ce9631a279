#!/usr/bin/env node
// Event-loop lag alone (the loopLagP99Ms part of bench/run.mjs, repeatable in isolation): one Node process, the
// public API (dist/lib + build/Release/pixelllm.node, backend cpu) on one encoded image, then alternating windows of
//   idle   — the loop does nothing (the control: what the machine alone costs),
//   serial — captions one after another, as run.mjs measures loopLagP99Ms,
//   conc   — `conc` concurrent captions at a time (the batching path),
// each window's p99 / max of monitorEventLoopDelay (1 ms resolution) and its main-thread CPU time.
//
//   node bench/lag.mjs [--model DIR] [--window MS] [--rounds N] [--tokens N] [--conc N] [--threads N] [--json]
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { median, round } from './lib/stats.mjs';

const require = createRequire(import.meta.url);
const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');

function parseArgs(argv) {
  const a = { model: path.join(BENCH, '.models/official-bert-reduced'), window: 4000, rounds: 2, tokens: 40, conc: 8,
    threads: os.availableParallelism(), json: false, modes: ['idle', 'serial', 'conc'] };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    if (k === '--json') a.json = true;
    else if (k === '--model') a.model = path.resolve(argv[++i]);
    else if (k === '--window') a.window = Number(argv[++i]);
    else if (k === '--rounds') a.rounds = Number(argv[++i]);
    else if (k === '--tokens') a.tokens = Number(argv[++i]);
    else if (k === '--conc') a.conc = Number(argv[++i]);
    else if (k === '--threads') a.threads = Number(argv[++i]);
    else if (k === '--modes') a.modes = argv[++i].split(',');
    else throw new Error(`lag: unknown argument ${k}`);
  }
  return a;
}

// The main thread's scheduler statistics (Linux): CPU time, time spent runnable but waiting for a CPU, slices.
function schedstat() {
  try {
    const [run, wait, slices] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { run, wait, slices };
  } catch {
    return null;
  }
}

async function window(ms, work) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const s0 = schedstat();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  h.enable();
  let captions = 0;
  if (work) {
    do captions += await work();
    while (performance.now() - t0 < ms);
  } else {
    await new Promise((r) => setTimeout(r, ms));
  }
  h.disable();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const s1 = schedstat();
  // Main thread: CPU ms it ran, ms it waited runnable for a CPU, and the mean wait per wake-up (slice).
  const main = s0 && s1 ? { runMs: round((s1.run - s0.run) / 1e6, 1), runqueueWaitMs: round((s1.wait - s0.wait) / 1e6, 1),
    waitPerSliceUs: round((s1.wait - s0.wait) / 1e3 / Math.max(1, s1.slices - s0.slices), 1) } : null;
  return { p99Ms: round(h.percentile(99) / 1e6, 3), p50Ms: round(h.percentile(50) / 1e6, 3), maxMs: round(h.max / 1e6, 3),
    captions, wallMs: round(wall, 0), processCpuPct: round((100 * (cpu.user + cpu.system)) / 1e3 / wall, 0), main };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const api = require(path.join(ROOT, 'dist/lib/index.js'));
  const model = await api.PixelLLM.load(o.model, { backend: 'cpu', threads: o.threads });
  const cfg = JSON.parse(readFileSync(path.join(o.model, 'config.json'), 'utf8'));
  const s = cfg.image_size;
  const data = Buffer.alloc(s * s * 3);
  for (let i = 0; i < data.length; ++i) data[i] = (i * 7) & 255;
  const img = await model.encode({ data, width: s, height: s, channels: 3 });
  const captions = (k) => async () => {
    await Promise.all(Array.from({ length: k }, () => model.caption(img, { maxTokens: o.tokens }).result));
    return k;
  };
  await captions(1)();  // warm-up
  const work = { idle: null, serial: captions(1), conc: captions(o.conc) };
  const out = Object.fromEntries(o.modes.map((m) => [m, []]));
  for (let r = 0; r < o.rounds; ++r) {
    for (const m of o.modes) {
      const res = await window(o.window, work[m]);
      out[m].push(res);
      if (!o.json) console.error(`round ${r + 1} ${m.padEnd(6)} p99 ${res.p99Ms} ms  max ${res.maxMs} ms  captions ${res.captions}  process cpu ${res.processCpuPct} %  main thread: ran ${res.main?.runMs} ms, waited for a cpu ${res.main?.runqueueWaitMs} ms (${res.main?.waitPerSliceUs} us per wake-up)`);
    }
  }
  model.dispose();
  const summary = Object.fromEntries(Object.entries(out).map(([m, xs]) => [m, { p99MsMedian: median(xs.map((x) => x.p99Ms)), windows: xs }]));
  const result = { model: path.relative(ROOT, o.model), threads: o.threads, windowMs: o.window, tokens: o.tokens, conc: o.conc,
    loadavg: os.loadavg().map((x) => round(x, 2)), summary };
  if (o.json) console.log(JSON.stringify(result));
  else for (const [m, v] of Object.entries(summary)) console.log(`${m.padEnd(6)} p99 median ${v.p99MsMedian} ms`);
}

main().catch((err) => {
  console.error(`lag: ${err?.stack ?? err}`);
  process.exit(1);
});
