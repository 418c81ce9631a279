#!/usr/bin/env node
// Event-loop lag alone (the loopLagP99Ms part of bench/run.mjs, repeatable in isolation): one Node process, the
// public API (dist/lib + build/Release/pixelllm.node, backend cpu) on one encoded image, then alternating windows of
//   idle   — the loop does nothing (the control: what the machine alone costs),
//   serial — captions one after another, as run.mjs measures loopLagP99Ms,
//   conc   — `conc` concurrent captions at a time (the batching path),
// each window's p99 / max of monitorEventLoopDelay (1 ms resolution), the main thread's CPU time and how long it sat
// runnable waiting for a CPU (bench/lib/loop_lag.mjs). PIXELLLM_DECODE_THREAD_NICE=0 turns the decode threads'
// lower priority off for an A/B (native/addon/decode_threads.h).
//
//   node bench/lag.mjs [--model DIR] [--window MS] [--rounds N] [--tokens N] [--conc N] [--threads N]
//                      [--modes idle,serial,conc] [--json]
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { loopLag } from './lib/loop_lag.mjs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
      const res = await loopLag(o.window, work[m]);
      out[m].push(res);
      if (!o.json) console.error(`round ${r + 1} ${m.padEnd(6)} p99 ${res.p99Ms} ms  max ${res.maxMs} ms  captions ${res.captions}  process cpu ${res.processCpuPct} %  main thread: ran ${res.mainThread?.runMs} ms, waited for a cpu ${res.mainThread?.runqueueWaitMs} ms (${res.mainThread?.waitPerWakeUs} us per wake-up)`);
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
