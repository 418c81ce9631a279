/**
 * Reduced precision on the CPU backend (cpu/packed_linear.h WeightFormat):
 *  - LoadOptions.decoderWeights 'bf16' holds the text decoder's weights as bfloat16 (float32 arithmetic);
 *  - LoadOptions.encoderPrecision 'bf16' runs the image encoders' matrix products in bfloat16 (AVX512-BF16).
 * On the shipped demo model (trained, so its choices have real margins) both say the same words at the same places
 * as float32. Also the options' validation and their report in model.info. Skipped without the addon or the demo
 * model; the encoder case without AVX512-BF16 checks the typed refusal instead.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { BackendUnavailableError, InvalidArgumentError, PixelLLM } from '../../lib';
import { loadNative } from '../../lib/native';
import { addonExpected } from '../helpers/native';
import { ROOT } from '../helpers/paths';

const DEMO = path.join(ROOT, 'engines', 'demo');
const SCENE = path.join(ROOT, 'examples', 'scenes', 'shapes_wide.png');

describe('reduced precision (decoderWeights, encoderPrecision)', function () {
  this.timeout(120_000);

  before(function () {
    if (!addonExpected() || !existsSync(path.join(DEMO, 'model.safetensors'))) this.skip();
  });

  it('refuses formats other than fp32 and bf16, before loading', async () => {
    await assert.rejects(PixelLLM.load(DEMO, { backend: 'cpu', decoderWeights: 'fp16' as never }), InvalidArgumentError);
    await assert.rejects(PixelLLM.load(DEMO, { backend: 'cpu', decoderWeights: 7 as never }), InvalidArgumentError);
    // the addon checks it too (callers of the binding skip lib/)
    assert.throws(() => loadNative().Model.load(DEMO, { backend: 'cpu', threads: 1, decoderWeights: 'int4' }),
      { code: 'INVALID_ARGUMENT', message: /decoderWeights/ });
    await assert.rejects(PixelLLM.load(DEMO, { backend: 'cpu', encoderPrecision: 'fp16' as never }), InvalidArgumentError);
    assert.throws(() => loadNative().Model.load(DEMO, { backend: 'cpu', threads: 1, encoderPrecision: 'int8' }),
      { code: 'INVALID_ARGUMENT', message: /encoderPrecision/ });
  });

  it('encodes in bfloat16 with the same caption and referring box as float32 (or refuses without AVX512-BF16)', async function () {
    let half: PixelLLM;
    try {
      half = await PixelLLM.load(DEMO, { backend: 'cpu', threads: 1, encoderPrecision: 'bf16' });
    } catch (err) {
      assert.ok(err instanceof BackendUnavailableError && /AVX512-BF16/.test(err.message), String(err));
      this.skip();
    }
    const full = await PixelLLM.load(DEMO, { backend: 'cpu', threads: 1 });
    try {
      assert.equal(half.info.encoderPrecision, 'bf16');
      assert.equal(full.info.encoderPrecision, 'fp32');
      const [a, b] = [await full.encode(SCENE), await half.encode(SCENE)];
      const [ca, cb] = [await full.caption(a, { maxTokens: 12 }).result, await half.caption(b, { maxTokens: 12 }).result];
      assert.deepEqual(cb.tokens, ca.tokens, `bf16 "${cb.text}" vs fp32 "${ca.text}"`);
      const [ra, rb] = [await full.refer(a, 'the yellow circle'), await half.refer(b, 'the yellow circle')];
      assert.ok(iou(ra.box, rb.box) > 0.9, `boxes ${ra.box} vs ${rb.box}`);
    } finally {
      full.dispose();
      half.dispose();
    }
  });

  it('captions with bf16 decoder weights as with fp32: same tokens, points within 1 px, close scores', async () => {
    const run = async (decoderWeights: 'fp32' | 'bf16') => {
      const model = await PixelLLM.load(DEMO, { backend: 'cpu', threads: 1, decoderWeights });
      try {
        assert.equal(model.info.decoderWeights, decoderWeights);
        const image = await model.encode(SCENE);
        return await model.caption(image, { maxTokens: 24 }).result;
      } finally {
        model.dispose();
      }
    };
    const full = await run('fp32');
    const half = await run('bf16');
    assert.ok(full.tokens.length >= 12, `caption too short to compare: ${full.text}`);
    assert.deepEqual(half.tokens, full.tokens, `bf16 "${half.text}" vs fp32 "${full.text}"`);
    let moved = 0;
    for (let i = 0; i < full.events.length; ++i) {
      const [a, b] = [full.events[i].point, half.events[i].point];
      moved = Math.max(moved, Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]));
    }
    assert.ok(moved < 1, `points moved up to ${moved} px`);
    assert.ok(moved > 0 || Math.abs(half.score - full.score) > 0, 'bf16 weights changed nothing: were they rounded?');
    assert.ok(Math.abs(half.score - full.score) < 0.05 * Math.max(1, Math.abs(full.score)), `score ${half.score} vs ${full.score}`);
  });
});

function iou(a: number[], b: number[]): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])), h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h, area = (x: number[]) => (x[2] - x[0]) * (x[3] - x[1]);
  return inter / (area(a) + area(b) - inter);
}
