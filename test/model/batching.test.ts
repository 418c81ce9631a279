/**
 * In-flight batching through the public API: 8 concurrent captions / describes / refers (greedy and beam search,
 * with and without prompts) on one model return what the same calls return one after another — tokens
 * identical, log-probs, points and boxes within 1e-5 — and aborting one of them (on build/golden/slow_bert, a
 * decode that lasts) leaves the others untouched.
 * The CPU backend batches the decode steps of concurrent requests (native/runtime/cpu/step_batcher.h); the addon
 * runs generations on its own threads so all 8 are in flight at once (native/addon/decode_threads.h).
 * Golden model dirs from engines/reference/scripts/make_golden_models.py (build/golden/<case>/).
 */
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { AbortedError, PixelLLM } from '../../lib';
import type { Box, EncodedImage, Generation } from '../../lib';
import { addonExpected } from '../helpers/native';
import { checkSame } from './batching-helpers';
import type { Outcome } from './batching-helpers';
import { GOLDEN_CASES, GOLDEN_DIR, goldenCase } from './golden-helpers';

/** The nice value of one of this process's threads (field 19 of /proc/self/task/<tid>/stat). */
function threadNice(tid: string): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** Nice values of this process's decode threads (named pixelllm-decode by native/addon/decode_threads.cc). */
function decodeThreadNices(): number[] {
  return readdirSync('/proc/self/task')
    .filter((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'pixelllm-decode')
    .map(threadNice);
}

describe('in-flight batching: concurrent calls == sequential calls (build/golden)', function () {
  this.timeout(300_000);
  for (const name of GOLDEN_CASES) {
    describe(name, () => {
      let model: PixelLLM;
      let calls: Array<() => Promise<Outcome>>;
      let sequential: Outcome[];

      before(async function () {
        const g = goldenCase(name);
        if (!addonExpected() || !g) {
          console.log(`      (skipped: ${g ? 'no addon' : `no ${GOLDEN_DIR}/${name}`})`);
          this.skip();
        }
        const { width, height } = g.exp;
        model = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 2 });
        const flipped = Buffer.from(g.rgb);
        flipped.reverse();  // a second image (mirrored both ways, channels reversed): other visual tokens
        const a: EncodedImage = await model.encode({ data: g.rgb, width, height, channels: 3 });
        const b: EncodedImage = await model.encode({ data: flipped, width, height, channels: 3 });
        const box: Box = [width * 0.1, height * 0.2, width * 0.7, height * 0.9];
        calls = [
          () => model.caption(a).result,
          () => model.caption(b).result,
          () => model.caption(a, { prompt: 'a photo of' }).result,
          () => model.caption(b, { beams: 3 }).result,
          () => model.describe(a, box).result,
          () => model.refer(a, g.exp.expression),
          () => model.refer(b, 'the blue square'),
          () => model.caption(a, { beams: 2, prompt: 'a photo of' }).result,
        ];
        sequential = [];
        for (const call of calls) sequential.push(await call());
      });
      after(() => model?.dispose());

      it('8 concurrent captions, describes and refers (greedy and beams) == the same calls one by one', async () => {
        const concurrent = await Promise.all(calls.map((call) => call()));
        concurrent.forEach((r, i) => checkSame(r, sequential[i], `call ${i}`));
        // twice more, all at once again (the batches form differently each time)
        const again = await Promise.all([...calls, ...calls].map((call) => call()));
        again.forEach((r, i) => checkSame(r, sequential[i % calls.length], `call ${i} (16 at once)`));
      });

      it('decode threads run below the event loop\'s priority (Linux: nice + 10, capped at 19)', function () {
        if (process.platform !== 'linux') this.skip();
        const threads = decodeThreadNices();
        assert.ok(threads.length >= 1, 'the generations above ran on threads named pixelllm-decode');
        const env = process.env.PIXELLLM_DECODE_THREAD_NICE;
        const step = env !== undefined && /^\d+$/.test(env) && Number(env) <= 19 ? Number(env) : 10;
        const want = Math.min(19, threadNice(String(process.pid)) + step);
        for (const nice of threads) assert.equal(nice, want, `decode thread nice ${nice}, event loop ${threadNice(String(process.pid))}`);
      });
    });
  }
});

// A decode that lasts (100k-word vocabulary, 64-token captions), so the abort lands mid-stream while the other
// requests share its batches.
describe('in-flight batching: aborting one request in a batch (build/golden/slow_bert)', function () {
  this.timeout(300_000);
  let model: PixelLLM;
  let calls: Array<(signal?: AbortSignal) => Generation>;
  let sequential: Outcome[];

  before(async function () {
    const g = goldenCase('slow_bert');
    if (!addonExpected() || !g) {
      console.log(`      (skipped: no ${GOLDEN_DIR}/slow_bert)`);
      this.skip();
    }
    const { width, height } = g.exp;
    model = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 2 });
    const flipped = Buffer.from(g.rgb);
    flipped.reverse();
    const a = await model.encode({ data: g.rgb, width, height, channels: 3 });
    const b = await model.encode({ data: flipped, width, height, channels: 3 });
    calls = [
      (signal) => model.caption(a, { signal }),
      (signal) => model.caption(b, { signal }),
      (signal) => model.caption(a, { signal, prompt: 'a photo of' }),
      (signal) => model.caption(b, { signal, prompt: 'a photo of' }),
      (signal) => model.describe(a, [10, 10, width / 2, height / 2], { signal }),
      (signal) => model.describe(b, [width / 3, height / 4, width - 1, height - 1], { signal }),
      (signal) => model.caption(a, { signal, beams: 2 }),
      (signal) => model.caption(b, { signal, maxTokens: 20 }),
    ];
    sequential = [];
    for (const call of calls) sequential.push(await call().result);
  });
  after(() => model?.dispose());

  it('the aborted one rejects with AbortedError mid-stream; the other 7 equal their sequential results', async () => {
    assert.ok(sequential[0].tokens.length > 4, 'the victim caption is long enough to abort mid-stream');
    const controller = new AbortController();
    const victim = calls[0](controller.signal);
    const others = calls.slice(1).map((call) => call().result);
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of victim) {
          if (++seen === 2) controller.abort();
        }
      })(),
      AbortedError,
    );
    await assert.rejects(victim.result, AbortedError);
    assert.ok(seen >= 2 && seen < sequential[0].tokens.length, `saw ${seen} of ${sequential[0].tokens.length} events`);
    const rest = await Promise.all(others);
    rest.forEach((r, i) => checkSame(r, sequential[i + 1], `call ${i + 1}`));
  });
});
