/**
 * Pipeline behaviour through the real addon and the lib/ API on a golden model (build/golden/bert_s1_h300, the
 * bottom-padded image; see golden.test.ts): resize + coordinate mapping to original pixels, abort mid-stream,
 * concurrent calls equal sequential ones, the event loop keeps turning during decodes, segment / describe /
 * denseCaption. Skipped (with the reason) when the addon or the golden model dirs are missing.
 */
import * as assert from 'node:assert/strict';
import sharp from 'sharp';
import { AbortedError, BackendUnavailableError, PixelLLM } from '../../lib';
import type { CaptionResult, EncodedImage } from '../../lib';
import { addonExpected } from '../helpers/native';
import { checkSame } from './batching-helpers';
import { GOLDEN_DIR, TOL, goldenCase, relL2 } from './golden-helpers';
import type { Expected } from './golden-helpers';

const CASE = 'bert_s1_h300';

/** Each pixel repeated f x f times (RGB8). */
function upscale(rgb: Buffer, width: number, height: number, f: number): Buffer {
  const out = Buffer.alloc(width * f * height * f * 3);
  for (let y = 0; y < height * f; y++) {
    for (let x = 0; x < width * f; x++) {
      rgb.copy(out, (y * width * f + x) * 3, ((Math.floor(y / f) * width) + Math.floor(x / f)) * 3, ((Math.floor(y / f) * width) + Math.floor(x / f)) * 3 + 3);
    }
  }
  return out;
}

describe('pipeline through the addon (golden model)', function () {
  this.timeout(300_000);
  let model: PixelLLM;
  let image: EncodedImage;
  let exp: Expected;
  let rgb: Buffer;

  before(async function () {
    const g = goldenCase(CASE);
    if (!addonExpected() || !g) {
      console.log(`      (skipped: ${g ? 'no addon' : `no ${GOLDEN_DIR}/${CASE}: run engines/reference/scripts/make_golden_models.py`})`);
      this.skip();
    }
    exp = g.exp;
    rgb = g.rgb;
    model = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 2 });
    image = await model.encode({ data: rgb, width: exp.width, height: exp.height, channels: 3 });
  });
  after(() => model?.dispose());

  it('reports the model and the CPU backend', () => {
    assert.equal(model.info.backend, 'cpu');
    assert.equal(model.info.textDecoder, 'git_decoder');
    assert.equal(model.info.imageSize, 384);
    assert.equal(model.info.hasMaskDecoder, true);
    assert.equal(model.info.hasProposalHead, false);
  });

  it('resizes the longer side to image_size and maps points back to original pixels', async () => {
    // 2x pixel replication: the half-pixel bilinear downsample gives back the golden image exactly, so the caption
    // is the golden one and every point scales by 2.
    const big = await model.encode({ data: upscale(rgb, exp.width, exp.height, 2), width: exp.width * 2, height: exp.height * 2, channels: 3 });
    assert.deepEqual([big.width, big.height], [exp.width * 2, exp.height * 2]);
    const r = await model.caption(big).result;
    assert.deepEqual(r.tokens, exp.caption.tokens);
    const corners = r.events.flatMap((e) => e.box);
    const err = relL2(corners, exp.caption.corners.flat().map((v) => v * 2));
    assert.ok(err <= TOL, `corners rel L2 ${err}`);
    for (const [i, v] of r.box!.entries()) assert.ok(Math.abs(v - 2 * exp.caption.box[i]) <= 0.02, `box ${r.box} vs 2 x ${exp.caption.box}`);
    // an encoded PNG of the same pixels goes through sharp and gives the same caption
    const png = await sharp(rgb, { raw: { width: exp.width, height: exp.height, channels: 3 } }).png().toBuffer();
    assert.deepEqual((await model.caption(png).result).tokens, exp.caption.tokens);
  });

  it('8 concurrent captions equal sequential ones', async () => {
    const boxes: [number, number, number, number][] = [[0, 0, 200, 150], [50, 40, 380, 290], [10, 100, 300, 299], [100, 0, 384, 200]];
    const sequential: CaptionResult[] = [];
    for (let i = 0; i < 8; i++) {
      sequential.push(await (i < 4 ? model.caption(image, { beams: 1 + (i % 2) }) : model.describe(image, boxes[i - 4])).result);
    }
    const concurrent = await Promise.all(
      Array.from({ length: 8 }, (_, i) => (i < 4 ? model.caption(image, { beams: 1 + (i % 2) }) : model.describe(image, boxes[i - 4])).result),
    );
    // decode steps of concurrent requests are batched (one GEMM over their rows): same tokens, floats within 1e-5
    concurrent.forEach((r, i) => checkSame(r, sequential[i], `call ${i}`));
    assert.deepEqual(sequential[0].tokens, exp.caption.tokens);
  });

  it('segments and describes boxes in original pixels; dense captioning needs a proposal head', async () => {
    const s = await model.segment(image, [40, 30, 250, 200]);
    assert.deepEqual([s.mask.width, s.mask.height], [exp.width, exp.height]);
    assert.deepEqual(s.box, [40, 30, 250, 200]);
    assert.ok(Number.isFinite(s.score));
    const d = await model.describe(image, [40, 30, 250, 200]).result;
    assert.ok(d.tokens.length > 0 && d.events.every((e) => e.point.every(Number.isFinite)));
    await assert.rejects(model.denseCaption(image), BackendUnavailableError);
  });

  describe('a decode that lasts (build/golden/slow_bert: 100k-word vocabulary, 64-token captions)', () => {
    let slow: PixelLLM;
    let simg: EncodedImage;
    let full: string[];

    before(async function () {
      const g = goldenCase('slow_bert');
      if (!addonExpected() || !g) {
        console.log(`      (skipped: no ${GOLDEN_DIR}/slow_bert: run engines/reference/scripts/make_golden_models.py)`);
        this.skip();
      }
      slow = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 2 });
      simg = await slow.encode({ data: g.rgb, width: g.exp.width, height: g.exp.height, channels: 3 });
      const t0 = Date.now();
      full = (await slow.caption(simg).result).tokens.map(String);
      console.log(`      (one caption: ${full.length} tokens in ${Date.now() - t0} ms)`);
    });
    after(() => slow?.dispose());

    it('aborts mid-stream with AbortedError and stays usable', async () => {
      const ac = new AbortController();
      const gen = slow.caption(simg, { signal: ac.signal });
      let seen = 0;
      await assert.rejects(
        (async () => {
          for await (const _ of gen) {
            if (++seen === 2) ac.abort();
          }
        })(),
        AbortedError,
      );
      await assert.rejects(gen.result, AbortedError);
      assert.ok(seen >= 2 && seen < full.length, `saw ${seen} of ${full.length} events`);
      assert.deepEqual((await slow.caption(simg).result).tokens.map(String), full);
    });

    it('keeps the event loop turning during a decode', async () => {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const t0 = Date.now();
      try {
        await slow.caption(simg).result;
      } finally {
        clearInterval(timer);
      }
      const ms = Date.now() - t0;
      // a blocked loop gives 0 or 1 tick however long the decode; allow for timer coarseness under load
      assert.ok(ticks >= Math.max(3, Math.floor(ms / 25)), `${ticks} timer ticks during a ${ms} ms decode`);
    });
  });
});
