/**
 * The committed reference fixtures (test/fixtures/reference/, engines/reference/scripts/fixtures_committed.py;
 * `npm run fixtures` regenerates them) through the real addon and the lib/ API: a tiny seeded model of the demo
 * architecture (GIT head, proposal head, demo tokenizer) on a non-square image the pipeline pads without
 * resampling (original pixels = model pixels). Covers what the golden files do not: beam search (2, 3 beams,
 * official rules), describe (a box prompt), segment, refer with a mask, dense captioning (proposals + NMS).
 * The addon exposes no intermediate tensors: those (tensors.safetensors) are for the native C++ tests; here the
 * final outputs are compared. Tolerances: tokens identical, relative L2 <= 1e-4, boxes within 0.01 px, binary
 * masks equal up to the pixels whose logit sits at the threshold.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, PixelLLM } from '../../lib';
import { loadNative } from '../../lib/native';
import type { Box, DenseOptions, EncodedImage, TokenEvent } from '../../lib';
import { addonExpected } from '../helpers/native';
import { FIXTURES } from '../helpers/paths';
import { BOX_TOL_PX, TOL, relL2 } from './golden-helpers';

const DIR = path.join(FIXTURES, 'reference');

interface TextExpected {
  tokens: number[];
  sequence: number[];
  logprobs: number[];
  corners: number[][];
  box: number[];
  score: number;
}

interface MaskExpected {
  iou: number;
  mask_b64: string;
  mask_fraction_near_zero: number;
  /** The same logits through LoadOptions.maskResize 'evaluator'. */
  mask_evaluator_b64: string;
  mask_evaluator_fraction_near_zero: number;
}

interface Expected {
  width: number;
  height: number;
  caption: TextExpected;
  beam2: TextExpected;
  beam3: TextExpected;
  describe: TextExpected & { prompt_box: Box };
  refer: TextExpected & MaskExpected & { expression: string; context_tokens: number[]; text_tokens: number[] };
  segment: MaskExpected & { box: Box };
  dense: {
    prompt: string;
    context_tokens: number[];
    runs: { options: Omit<DenseOptions, 'signal' | 'prompt'>; items: { box: number[]; score: number; tokens: number[]; caption_score: number }[] }[];
  };
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);
}

function checkBox(box: number[] | undefined, ref: number[], what: string): void {
  assert.ok(box, `${what}: no box`);
  const worst = Math.max(...box.map((v, i) => Math.abs(v - ref[i])));
  assert.ok(worst <= BOX_TOL_PX, `${what}: box off by ${worst} px (${box} vs ${ref})`);
}

function checkText(r: { tokens: number[]; score: number; events: TokenEvent[]; box?: number[] }, e: TextExpected, what: string): void {
  assert.deepEqual(r.tokens, e.tokens, `${what}: tokens`);
  assert.ok(relErr(r.score, e.score) <= TOL, `${what}: score ${r.score} vs ${e.score}`);
  assert.deepEqual(r.events.map((t) => t.token), e.tokens, `${what}: event tokens`);
  if (e.tokens.length > 0) {
    const lp = relL2(r.events.map((t) => t.logprob), e.logprobs);
    assert.ok(lp <= TOL, `${what}: per-token log-probs rel L2 ${lp}`);
    const corners = relL2(r.events.flatMap((t) => t.box), e.corners.flat());
    assert.ok(corners <= TOL, `${what}: per-token corners rel L2 ${corners}`);
  }
  checkBox(r.box, e.box, what);
}

function checkMask(mask: { width: number; height: number; toBitmap(): Uint8Array } | undefined, iou: number | undefined,
  e: MaskExpected, exp: Expected, what: string, resize: 'sam' | 'evaluator' = 'sam'): void {
  assert.ok(mask && iou !== undefined, `${what}: no mask`);
  assert.ok(relErr(iou, e.iou) <= TOL, `${what}: iou ${iou} vs ${e.iou}`);
  assert.deepEqual([mask.width, mask.height], [exp.width, exp.height]);
  const ref = Buffer.from(resize === 'sam' ? e.mask_b64 : e.mask_evaluator_b64, 'base64');
  const ours = mask.toBitmap();
  let diff = 0;
  for (let i = 0; i < ref.length; i++) if ((ours[i] ? 1 : 0) !== ref[i]) diff++;
  const budget = (resize === 'sam' ? e.mask_fraction_near_zero : e.mask_evaluator_fraction_near_zero) + 1e-4;
  assert.ok(diff / ref.length <= budget, `${what}: ${diff} mask pixels differ (budget ${budget})`);
}

describe('committed reference fixtures through the addon (test/fixtures/reference)', function () {
  this.timeout(120_000);
  let model: PixelLLM;
  let image: EncodedImage;
  let exp: Expected;

  before(async function () {
    if (!addonExpected()) {
      console.log('      (skipped: no addon)');
      this.skip();
    }
    assert.ok(existsSync(path.join(DIR, 'expected.json')), `no ${DIR}/expected.json: run npm run fixtures`);
    exp = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Expected;
    model = await PixelLLM.load(path.join(DIR, 'model'), { backend: 'cpu', threads: 2 });
    image = await model.encode({ data: readFileSync(path.join(DIR, 'image.rgb')), width: exp.width, height: exp.height, channels: 3 });
  });
  after(() => model?.dispose());

  it('greedy caption (KV-cache decode): tokens, score, per-token log-probs and corners, box', async () => {
    checkText(await model.caption(image).result, exp.caption, 'caption');
  });

  for (const k of [2, 3] as const) {
    it(`beam search with ${k} beams (official rules): the best beam, its score, per-token log-probs and corners`, async () => {
      checkText(await model.caption(image, { beams: k }).result, exp[`beam${k}`], `beam${k}`);
    });
  }

  it('describe: the box prompt', async () => {
    checkText(await model.describe(image, exp.describe.prompt_box).result, exp.describe, 'describe');
  });

  it('refer with a mask: token rows, box, per-token points, mask and IoU', async () => {
    const e = exp.refer;
    const { context, text } = model.tokenizer.referTokens(e.expression, model.info);
    assert.deepEqual(context, e.context_tokens);
    assert.deepEqual(text, e.text_tokens);
    const r = await model.refer(image, e.expression, { mask: true });
    checkText(r, e, 'refer');
    checkMask(r.mask, r.maskScore, e, exp, 'refer');
  });

  it('segment: mask and IoU for a box', async () => {
    const r = await model.segment(image, exp.segment.box);
    checkMask(r.mask, r.score, exp.segment, exp, 'segment');
    checkBox(r.box, exp.segment.box, 'segment');
  });

  it("maskResize 'evaluator': the official evaluator's crop of the same logits (segment and refer)", async () => {
    assert.equal(model.info.maskResize, 'sam');
    const ev = await PixelLLM.load(path.join(DIR, 'model'), { backend: 'cpu', threads: 2, maskResize: 'evaluator' });
    try {
      assert.equal(ev.info.maskResize, 'evaluator');
      const img = await ev.encode({ data: readFileSync(path.join(DIR, 'image.rgb')), width: exp.width, height: exp.height, channels: 3 });
      const s = await ev.segment(img, exp.segment.box);
      checkMask(s.mask, s.score, exp.segment, exp, 'segment (evaluator)', 'evaluator');
      const r = await ev.refer(img, exp.refer.expression, { mask: true });
      checkMask(r.mask, r.maskScore, exp.refer, exp, 'refer (evaluator)', 'evaluator');
      // the fixture's two post-processings differ, so the option reached the pipeline
      assert.notEqual(exp.segment.mask_b64, exp.segment.mask_evaluator_b64);
    } finally {
      ev.dispose();
    }
    await assert.rejects(PixelLLM.load(path.join(DIR, 'model'), { maskResize: 'cv2' as never }), InvalidArgumentError);
    // the addon checks it too (callers of the binding skip lib/)
    assert.throws(() => loadNative().Model.load(path.join(DIR, 'model'), { backend: 'cpu', threads: 1, maskResize: 'nearest' }),
      { code: 'INVALID_ARGUMENT', message: /maskResize/ });
  });

  it('dense captioning: proposals after NMS, their captions, scores and order', async function () {
    if (!model.info.hasProposalHead) {
      // The model has a proposal_head section; a runtime without the component's port reports none.
      console.log('      (skipped: this runtime reports no proposal head)');
      this.skip();
    }
    assert.deepEqual(model.tokenizer.promptTokens(exp.dense.prompt, model.info), exp.dense.context_tokens);
    for (const run of exp.dense.runs) {
      const items = await model.denseCaption(image, { ...run.options, prompt: exp.dense.prompt });
      const what = `dense ${JSON.stringify(run.options)}`;
      assert.equal(items.length, run.items.length, `${what}: item count`);
      items.forEach((it, i) => {
        const e = run.items[i];
        checkBox(it.box, e.box, `${what} #${i}`);
        assert.ok(relErr(it.score, e.score) <= TOL, `${what} #${i}: score ${it.score} vs ${e.score}`);
        assert.deepEqual(it.tokens, e.tokens, `${what} #${i}: tokens`);
        assert.ok(relErr(it.captionScore, e.caption_score) <= TOL, `${what} #${i}: caption score`);
      });
    }
  });
});
