/**
 * LoadOptions.decoderWeights: 'bf16' holds the text decoder's weights as bfloat16 (cpu/packed_linear.h; the
 * arithmetic stays float32). On the shipped demo model (trained, so its greedy choices have real margins) a caption
 * with bf16 weights says the same words at the same places as float32. Also the option's validation and its report
 * in model.info. Skipped without the addon or the demo model.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, PixelLLM } from '../../lib';
import { loadNative } from '../../lib/native';
import { addonExpected } from '../helpers/native';
import { ROOT } from '../helpers/paths';

const DEMO = path.join(ROOT, 'engines', 'demo');
const SCENE = path.join(ROOT, 'examples', 'scenes', 'shapes_wide.png');

describe('decoder weights (fp32 | bf16)', function () {
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
