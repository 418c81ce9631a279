/**
 * Soak test (not a timed unit test): long runs that unit tests cannot afford, printing the numbers.
 *
 *   node --expose-gc --require tsx/cjs bench/soak.ts [--model DIR] [--requests 1000] [--concurrent 64]
 *        [--rounds 5] [--threads 2] [--deadline 300] [--phase sequential|concurrent|memory|all]
 *        [--kinds caption,refer,describe,segment,encode] [--encode-every 10] [--no-dispose]
 *
 * 1. sequential: `--requests` requests one after another on one model (caption / refer with mask / describe /
 *    segment in turn, `--kinds`; every `--encode-every`th request re-encodes the image, 0 = never). RSS is sampled after a warm-up of 10% of the
 *    requests and at the end (after a GC); the drift must stay under 5%.
 * 2. concurrent: `--rounds` rounds of: load a model, start `--concurrent` requests (mixed tasks; half at once, half
 *    at random times up to 800 ms; a third of them aborted through an AbortSignal after a random delay), dispose()
 *    the model after a random delay (100-600 ms) in the middle (calls already started finish, later ones fail DISPOSED). Every promise must settle (`--deadline` s) with a result or a PixelLLMError ABORTED / DISPOSED; any other
 *    outcome, an unsettled promise or a crash fails the run. RSS after each round (after a GC) is printed; RSS
 *    after the last round must be within 5% of RSS after the middle round (allocators settle in the first rounds).
 * 3. memory: peak RSS above idle for one encode, one caption, and 8 concurrent captions (docs/limits.md).
 * Default model: build/golden/bert_s0_h384 (engines/reference/scripts/make_golden_models.py); any model dir works
 * (without image.rgb + expected.json a synthetic 640x480 image is used). Exits 1 on failure.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { PixelLLM, PixelLLMError } from '../lib';
import type { Box, EncodedImage } from '../lib';

const ROOT = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
function arg(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const MODEL = arg('model', path.join(ROOT, 'build', 'golden', 'bert_s0_h384'));
const REQUESTS = Number(arg('requests', '1000'));
const CONCURRENT = Number(arg('concurrent', '64'));
const ROUNDS = Number(arg('rounds', '5'));
const THREADS = Number(arg('threads', '2'));
const PHASE = arg('phase', 'all');
const DEADLINE_S = Number(arg('deadline', '300'));
// Request kinds for the sequential phase, cycled: caption, refer (with mask), describe, segment, encode.
const KINDS = arg('kinds', 'caption,refer,describe,segment').split(',');
const ENCODE_EVERY = Number(arg('encode-every', '10'));
// By default a replaced EncodedImage is dispose()d (the documented way to free features now); --no-dispose leaves
// them to the garbage collector, which does not know their native size (see docs/limits.md).
const NO_DISPOSE = args.includes('--no-dispose');

const gc = (globalThis as { gc?: () => void }).gc;
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
async function settledRss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  return process.memoryUsage().rss;
}

interface Image {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
  expression: string;
}
/** The model dir's image.rgb + expected.json (golden dirs), else a synthetic 640x480 gradient with two shapes. */
function loadImage(): Image {
  const expFile = path.join(MODEL, 'expected.json');
  if (existsSync(expFile)) {
    const exp = JSON.parse(readFileSync(expFile, 'utf8')) as { width: number; height: number; expression?: string };
    const data = readFileSync(path.join(MODEL, 'image.rgb'));
    return { data, width: exp.width, height: exp.height, channels: 3, expression: exp.expression ?? 'the object' };
  }
  const width = 640;
  const height = 480;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const inCircle = (x - 200) ** 2 + (y - 200) ** 2 < 80 ** 2;
      const inRect = x > 380 && x < 560 && y > 260 && y < 420;
      data[o] = inCircle ? 220 : (x * 255) / width;
      data[o + 1] = inRect ? 40 : (y * 255) / height;
      data[o + 2] = inRect ? 200 : 128;
    }
  }
  return { data, width, height, channels: 3, expression: 'the red circle' };
}

/** One request of `kind` on an encoded image. */
async function request(model: PixelLLM, img: EncodedImage, image: Image, kind: string, signal?: AbortSignal): Promise<unknown> {
  const box: Box = [image.width * 0.1, image.height * 0.2, image.width * 0.6, image.height * 0.9];
  switch (kind) {
    case 'caption': return model.caption(img, { signal }).result;
    case 'refer': return model.refer(img, image.expression, { mask: true, signal });
    case 'describe': {
      let n = 0;
      for await (const _ of model.describe(img, box, { signal })) n++;
      return n;
    }
    case 'segment': return model.segment(img, box, { signal });
    case 'encode': {
      const e = await model.encode(image);
      if (!NO_DISPOSE) e.dispose();
      return e;
    }
    default: throw new Error(`unknown request kind ${kind}`);
  }
}
const MIXED = ['caption', 'refer', 'describe', 'segment'];

async function sequential(image: Image): Promise<boolean> {
  const model = await PixelLLM.load(MODEL, { backend: 'cpu', threads: THREADS });
  let img = await model.encode(image);
  const warm = Math.max(1, Math.floor(REQUESTS / 10));
  let base = 0;
  const t0 = Date.now();
  for (let i = 0; i < REQUESTS; i++) {
    if (ENCODE_EVERY > 0 && i % ENCODE_EVERY === ENCODE_EVERY - 1) {
      if (!NO_DISPOSE) img.dispose();
      img = await model.encode(image);
    }
    await request(model, img, image, KINDS[i % KINDS.length]);
    if (i + 1 === warm) base = await settledRss();
    if ((i + 1) % Math.max(1, Math.floor(REQUESTS / 5)) === 0) {
      console.log(`  sequential: ${i + 1}/${REQUESTS} requests, rss ${mb(process.memoryUsage().rss)} MB`);
    }
  }
  const end = await settledRss();
  const secs = (Date.now() - t0) / 1000;
  model.dispose();
  const mu = process.memoryUsage();
  console.log(`  at the end: heapUsed ${mb(mu.heapUsed)} MB, external ${mb(mu.external)} MB, arrayBuffers ${mb(mu.arrayBuffers)} MB`);
  const drift = (end - base) / base;
  const ok = drift < 0.05;
  console.log(`sequential: ${REQUESTS} requests in ${secs.toFixed(1)}s (${(REQUESTS / secs).toFixed(1)}/s); rss after ${warm} ` +
    `${mb(base)} MB, after ${REQUESTS} ${mb(end)} MB, drift ${(100 * drift).toFixed(2)}% ${ok ? 'OK' : 'FAIL (>= 5%)'}`);
  return ok;
}

async function concurrentRound(image: Image, round: number): Promise<{ ok: boolean; counts: Record<string, number> }> {
  const model = await PixelLLM.load(MODEL, { backend: 'cpu', threads: THREADS });
  const img = await model.encode(image);
  const counts: Record<string, number> = {};
  const bad: string[] = [];
  const started = Date.now();
  const promises: Promise<unknown>[] = [];
  const timers: NodeJS.Timeout[] = [];
  const record = (p: Promise<unknown>) =>
    p.then(
      () => { counts.ok = (counts.ok ?? 0) + 1; },
      (err: unknown) => {
        const code = err instanceof PixelLLMError ? err.code : `not a PixelLLMError: ${String(err)}`;
        counts[code] = (counts[code] ?? 0) + 1;
        if (code !== 'ABORTED' && code !== 'DISPOSED') bad.push(code);
      },
    );
  for (let i = 0; i < CONCURRENT; i++) {
    let signal: AbortSignal | undefined;
    if (Math.random() < 1 / 3) {
      const ac = new AbortController();
      signal = ac.signal;
      timers.push(setTimeout(() => ac.abort(), Math.random() * 400));
    }
    // Half the requests start at once, the others at random times up to 800 ms (some after the dispose());
    // some decode the image themselves (raw input) so encodes also race the dispose.
    const input = i % 8 === 7 ? image : img;
    const start = () => (input === img ? request(model, img, image, MIXED[(i + round) % 4], signal) : model.caption(input, { signal }).result);
    if (i % 2 === 0) {
      promises.push(record((async () => start())()));
    } else {
      promises.push(record(new Promise((resolve, reject) => {
        timers.push(setTimeout(() => (async () => start())().then(resolve, reject), Math.random() * 800));
      })));
    }
  }
  timers.push(setTimeout(() => model.dispose(), 100 + Math.random() * 500));
  let timeout: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((r) => { timeout = setTimeout(() => r('timeout'), DEADLINE_S * 1000); });
  const all = await Promise.race([Promise.all(promises).then(() => 'settled' as const), deadline]);
  clearTimeout(timeout);
  timers.forEach(clearTimeout);
  if (!NO_DISPOSE) img.dispose();
  model.dispose();
  // Calls after dispose() are refused.
  try {
    await model.caption(img).result;
    bad.push('a call after dispose() succeeded');
  } catch (err) {
    if (!(err instanceof PixelLLMError && err.code === 'DISPOSED')) bad.push(`after dispose: ${String(err)}`);
  }
  if (all !== 'settled') bad.push(`some promises did not settle within ${DEADLINE_S} s`);
  if (bad.length) console.log(`  round ${round}: problems: ${[...new Set(bad)].join('; ')}`);
  counts.settle_ms = Date.now() - started;
  return { ok: bad.length === 0, counts };
}

async function concurrent(image: Image): Promise<boolean> {
  let ok = true;
  let first = 0;
  const rss: number[] = [];
  const t0 = Date.now();
  for (let r = 0; r < ROUNDS; r++) {
    const res = await concurrentRound(image, r);
    ok &&= res.ok;
    const now = await settledRss();
    rss.push(now);
    if (r === 0) first = now;
    console.log(`  concurrent round ${r + 1}/${ROUNDS}: ${JSON.stringify(res.counts)}, rss ${mb(now)} MB`);
  }
  // Allocators settle over the first rounds (glibc's dynamic mmap threshold, arenas): the leak check compares the
  // last round with the middle one, and reports the first for reference.
  const last = rss[rss.length - 1];
  const mid = rss[Math.floor((rss.length - 1) / 2)];
  const leakOk = last <= mid * 1.05;
  console.log(`concurrent: ${ROUNDS} rounds x ${CONCURRENT} requests with random aborts + dispose() in ${((Date.now() - t0) / 1000).toFixed(1)}s; ` +
    `all settled with a result or ABORTED/DISPOSED: ${ok ? 'yes' : 'NO'}; rss after round 1 ${mb(first)} MB, after round ` +
    `${Math.floor((ROUNDS - 1) / 2) + 1} ${mb(mid)} MB, after round ${ROUNDS} ${mb(last)} MB ` +
    `${leakOk ? 'OK' : 'FAIL (grew >= 5% over the second half)'}`);
  return ok && leakOk;
}

/** Peak RSS above the idle RSS while `fn` runs (sampled every 2 ms). */
async function peakAbove(fn: () => Promise<unknown>): Promise<number> {
  const idle = await settledRss();
  let peak = idle;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 2);
  await fn();
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  return peak - idle;
}

async function memory(image: Image): Promise<boolean> {
  const before = await settledRss();
  const model = await PixelLLM.load(MODEL, { backend: 'cpu', threads: THREADS });
  const loaded = await settledRss();
  // Each measured call is the first of its kind on a fresh model (no warm-up), so the allocator's growth is counted.
  let img: EncodedImage | undefined;
  const enc = await peakAbove(async () => { img = await model.encode(image); });
  if (!img) throw new Error('no image');
  const cap = await peakAbove(() => model.caption(img!).result);
  const ref = await peakAbove(() => model.refer(img!, image.expression, { mask: true }));
  const cap8 = await peakAbove(() => Promise.all(Array.from({ length: 8 }, () => model.caption(img!).result)));
  // The largest image the JS layer takes by default (64 MP, DEFAULT_MAX_PIXELS) as raw RGB: the caller's buffer
  // (192 MiB, allocated before the measurement starts) is not counted, only what encoding it adds.
  const side = 8192;
  const big = { data: Buffer.alloc(side * side * 3, 128), width: side, height: side, channels: 3 as const };
  const t0 = Date.now();
  const encBig = await peakAbove(() => model.encode(big));
  const encBigMs = Date.now() - t0;
  model.dispose();
  console.log(`memory (${path.basename(MODEL)}, threads ${THREADS}): model load +${mb(loaded - before)} MB rss; peak above idle: ` +
    `encode ${mb(enc)} MB, caption ${mb(cap)} MB, refer+mask ${mb(ref)} MB, 8 concurrent captions ${mb(cap8)} MB, ` +
    `encode of a ${side}x${side} raw image ${mb(encBig)} MB (${encBigMs} ms)`);
  return true;
}

async function main(): Promise<void> {
  if (!gc) console.log('(run with node --expose-gc for stable RSS numbers)');
  const image = loadImage();
  const malloc = Object.keys(process.env).filter((k) => k.startsWith('MALLOC_')).map((k) => `${k}=${process.env[k]}`);
  console.log(`soak: model ${MODEL}, threads ${THREADS}, node ${process.version}, ${NO_DISPOSE ? 'no dispose()' : 'dispose() of replaced images'}, ` +
    `glibc malloc ${malloc.length ? malloc.join(' ') : 'defaults'}`);
  let ok = true;
  if (PHASE === 'all' || PHASE === 'memory') ok = (await memory(image)) && ok;
  if (PHASE === 'all' || PHASE === 'sequential') ok = (await sequential(image)) && ok;
  if (PHASE === 'all' || PHASE === 'concurrent') ok = (await concurrent(image)) && ok;
  console.log(ok ? 'soak: OK' : 'soak: FAILED');
  process.exitCode = ok ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
