/**
 * The JS API and the addon on a loaded model: streaming order, cancellation, dispose, argument validation.
 * Properties only (they hold for any model); accuracy and reference agreement live in their own tests.
 * Needs a model directory (see helpers/native.ts); skipped without one.
 */
import * as assert from 'node:assert/strict';
import sharp from 'sharp';
import { AbortedError, DisposedError, EncodedImage, InvalidBoxError, InvalidTextError, Mask, PixelLLM } from '../../lib';
import { loadNative } from '../../lib/native';
import type { NativeFeatures, NativeModel } from '../../lib/native';
import { testModelDir } from '../helpers/native';

const W = 64;
const H = 48;

async function testImage(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="100%" height="100%" fill="#eee"/>` +
    `<circle cx="20" cy="20" r="12" fill="red"/><rect x="36" y="20" width="20" height="20" fill="blue"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

describe('model API', function () {
  this.timeout(120_000);
  let model: PixelLLM;
  let image: EncodedImage;

  before(async function () {
    const dir = testModelDir();
    if (!dir) this.skip();
    model = await PixelLLM.load(dir, { backend: 'cpu', threads: 1 });
    image = await model.encode(await testImage());
  });
  after(() => model?.dispose());

  it('describes the model', () => {
    assert.equal(model.info.backend, 'cpu');
    assert.ok(model.info.vocabSize >= model.tokenizer.vocabSize);
    assert.deepEqual([image.width, image.height], [W, H]);
  });

  it('streams one event per token, in order, matching the result', async () => {
    const gen = model.caption(image);
    const seen = [];
    for await (const e of gen) seen.push(e);
    const result = await gen.result;
    assert.ok(seen.length > 0);
    assert.deepEqual(seen.map((e) => e.index), seen.map((_, i) => i));
    assert.deepEqual(seen, result.events);
    assert.deepEqual(seen.map((e) => e.token), result.tokens);
    assert.equal(result.text, model.tokenizer.decode(result.tokens));
    for (const e of seen) {
      assert.equal(e.point.length, 2);
      assert.equal(e.box.length, 4);
      assert.ok([...e.point, ...e.box, e.logprob].every(Number.isFinite));
    }
  });

  it('gives the same result when only `.result` is awaited', async () => {
    const a = await model.caption(image).result;
    const b = await model.caption(image).result;
    assert.deepEqual(a.tokens, b.tokens);
  });

  it('aborts through an AbortSignal (before and during generation)', async () => {
    await assert.rejects(model.caption(image, { signal: AbortSignal.abort() }).result, AbortedError);
    // During: a small model may finish before the abort lands; then the full result stands.
    const ac = new AbortController();
    const gen = model.caption(image, { signal: ac.signal });
    let seen = 0;
    try {
      for await (const _ of gen) {
        seen++;
        ac.abort();
      }
    } catch (err) {
      assert.ok(err instanceof AbortedError, String(err));
    }
    await gen.result.then(
      (r) => assert.equal(r.tokens.length, seen),
      (err) => assert.ok(err instanceof AbortedError, String(err)),
    );
  });

  it('cancels when the loop is left early', async () => {
    const gen = model.caption(image);
    for await (const _ of gen) break;
    await gen.result.then(
      (r) => assert.ok(r.tokens.length >= 1), // finished before the cancel arrived
      (err) => assert.ok(err instanceof AbortedError),
    );
  });

  it('continues from a task prompt', async () => {
    const r = await model.caption(image, { prompt: 'a' }).result;
    assert.ok(r.tokens.length > 0);
    await assert.rejects(model.caption(image, { prompt: ' ' }).result, InvalidTextError);
  });

  it('runs concurrent calls on one model', async () => {
    const results = await Promise.all([model.caption(image).result, model.caption(image).result]);
    assert.deepEqual(results[0].tokens, results[1].tokens);
  });

  it('refers and segments in original-image pixels', async () => {
    const r = await model.refer(image, 'the red circle', { mask: model.info.hasMaskDecoder });
    assert.equal(r.box.length, 4);
    assert.ok(r.box.every(Number.isFinite));
    assert.ok(r.events.length > 0);
    if (model.info.hasMaskDecoder) {
      assert.ok(r.mask instanceof Mask);
      assert.deepEqual([r.mask!.width, r.mask!.height], [W, H]);
      const s = await model.segment(image, [30, 15, 60, 45]);
      assert.deepEqual([s.mask.width, s.mask.height], [W, H]);
      assert.ok(Number.isFinite(s.score));
    }
  });

  it('validates boxes and text before they reach C++', async () => {
    await assert.rejects(model.segment(image, [0, 0, W + 1, 10]), InvalidBoxError);
    await assert.rejects(model.segment(image, [10, 10, 5, 20]), InvalidBoxError);
    await assert.rejects(model.segment(image, [0, 0, NaN, 10]), InvalidBoxError);
    await assert.rejects(model.describe(image, [1, 2, 3] as never).result, InvalidBoxError);
    await assert.rejects(model.describe(image, [0, 0, NaN, 10]).result, InvalidBoxError);
    await assert.rejects(model.refer(image, '   '), InvalidTextError);
    await assert.rejects(model.caption(image, { maxTokens: -1 }).result, { code: 'INVALID_ARGUMENT' });
    await assert.rejects(model.caption(image, { beams: 0 }).result, { code: 'INVALID_ARGUMENT' });
  });

  it('reports bad generation arguments through the Generation, never by a synchronous throw', async () => {
    let gen: ReturnType<typeof model.caption> | undefined;
    assert.doesNotThrow(() => {
      gen = model.caption(image, { maxTokens: 4096 });
    });
    await assert.rejects(gen!.result, { code: 'LIMIT_EXCEEDED' });
    await assert.rejects(async () => {
      for await (const _ of model.describe(image, [5, 5, 1, 1])) assert.fail('no event expected');
    }, InvalidBoxError);
  });

  it('validates every argument in the addon', async () => {
    const native = (model as unknown as { native: NativeModel }).native;
    assert.throws(() => native.encode(Buffer.alloc(10), 2, 2), { code: 'INVALID_IMAGE', message: /expected width\*height\*3 = 12/ });
    assert.throws(() => native.encode(Buffer.alloc(12), 2.5, 2), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.encode(new Float32Array(12) as never, 2, 2), { code: 'INVALID_ARGUMENT' });
    const f = await native.encode(Buffer.alloc(12), 2, 2);
    assert.throws(() => native.generate({} as NativeFeatures, { task: 'caption' }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.generate(f, { task: 'nope' as never }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.generate(f, { task: 'describe' }), { code: 'INVALID_BOX' });
    assert.throws(() => native.generate(f, { task: 'describe', box: [0, 0, 3, 1] }), { code: 'INVALID_BOX' });
    assert.throws(() => native.generate(f, { task: 'refer' }), { code: 'INVALID_TEXT' });
    assert.throws(() => native.generate(f, { task: 'refer', textTokens: Int32Array.from([1, 1e6]) }), { code: 'INVALID_TEXT' });
    assert.throws(() => native.generate(f, { task: 'refer', textTokens: [1, 2.5] as never }), { code: 'INVALID_TEXT' });
    assert.throws(() => native.generate(f, { task: 'caption', beams: 0 }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.generate(f, { task: 'caption', withMask: true }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.generate(f, { task: 'caption' }, 'x' as never), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.generate(f, { task: 'caption' }, null, {} as never), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => native.segment(f, [0, 0, 1] as never), { code: 'INVALID_BOX' });
    assert.throws(() => native.dense(f, { scoreThreshold: Infinity }), { code: 'INVALID_ARGUMENT' });
    f.dispose();
    assert.equal(f.disposed, true);
    assert.throws(() => native.segment(f, [0, 0, 1, 1]), { code: 'DISPOSED' });
  });

  it('refuses features from another model', async () => {
    const other = await PixelLLM.load(model.info.dir, { backend: 'cpu', threads: 1 });
    try {
      await assert.rejects(other.segment(image, [0, 0, 10, 10]), { code: 'INVALID_ARGUMENT', message: /another model/ });
    } finally {
      other.dispose();
    }
  });

  it('rejects an exception thrown by the token callback and stops generating', async () => {
    const native = (model as unknown as { native: NativeModel }).native;
    const f = await native.encode(Buffer.alloc(W * H * 3), W, H);
    const boom = new Error('listener failed');
    let calls = 0;
    await assert.rejects(native.generate(f, { task: 'caption' }, () => { calls++; throw boom; }, new (loadNative().CancelToken)()), (e) => e === boom);
    assert.equal(calls, 1);
  });

  it('dispose lets calls in flight finish and fails later ones with DisposedError', async () => {
    const m = await PixelLLM.load(model.info.dir, { backend: 'cpu', threads: 1 });
    const img = await m.encode(await testImage());
    const inflight = m.caption(img).result;
    m.dispose();
    assert.equal(m.disposed, true);
    const result = await inflight;
    assert.ok(result.tokens.length > 0);
    await assert.rejects(m.caption(img).result, DisposedError); // reported by the Generation (dispose.test.ts)
    await assert.rejects(m.encode(await testImage()), DisposedError);
    await assert.rejects(m.segment(img, [0, 0, 5, 5]), DisposedError);
    m.dispose(); // idempotent
  });

  it('supports `await using` via Symbol.asyncDispose', async () => {
    const m = await PixelLLM.load(model.info.dir, { backend: 'cpu', threads: 1 });
    await m[Symbol.asyncDispose]();
    assert.equal(m.disposed, true);
  });
});
