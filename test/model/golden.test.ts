/**
 * The golden models end to end through the real addon and the lib/ API: the four official golden cases (GIT and
 * T5 heads, square and bottom-padded images) against the reference model on the same 8-bit image.
 * Model dirs + expected.json come from engines/reference/scripts/make_golden_models.py (build/golden/<case>/;
 * .ci/run generates them). Tolerances: tokens identical, relative L2 <= 1e-4, boxes within 0.01 px, binary masks
 * equal up to the pixels whose logit sits at the threshold.
 */
import * as assert from 'node:assert/strict';
import { PixelLLM } from '../../lib';
import type { EncodedImage, TokenEvent } from '../../lib';
import { addonExpected } from '../helpers/native';
import { BOX_TOL_PX, GOLDEN_CASES, GOLDEN_DIR, TOL, goldenCase, relL2 } from './golden-helpers';
import type { Expected, TaskExpected } from './golden-helpers';

function checkEvents(events: TokenEvent[], e: TaskExpected, what: string): void {
  assert.deepEqual(events.map((t) => t.token), e.tokens, `${what}: event tokens`);
  const lp = relL2(events.map((t) => t.logprob), e.logprobs);
  assert.ok(lp <= TOL, `${what}: per-token log-probs rel L2 ${lp}`);
  const corners = relL2(events.flatMap((t) => t.box), e.corners.flat());
  assert.ok(corners <= TOL, `${what}: per-token corners rel L2 ${corners}`);
  for (const t of events) {
    assert.ok(Math.abs(t.point[0] - (t.box[0] + t.box[2]) / 2) < 1e-3 && Math.abs(t.point[1] - (t.box[1] + t.box[3]) / 2) < 1e-3);
  }
}

function checkBox(box: number[] | undefined, ref: number[], what: string): void {
  assert.ok(box, `${what}: no box`);
  const worst = Math.max(...box.map((v, i) => Math.abs(v - ref[i])));
  assert.ok(worst <= BOX_TOL_PX, `${what}: box off by ${worst} px (${box} vs ${ref})`);
}

describe('golden models through the addon (build/golden)', function () {
  this.timeout(300_000);
  for (const name of GOLDEN_CASES) {
    describe(name, () => {
      let model: PixelLLM;
      let image: EncodedImage;
      let exp: Expected;

      before(async function () {
        const g = goldenCase(name);
        if (!addonExpected() || !g) {
          console.log(`      (skipped: ${g ? 'no addon' : `no ${GOLDEN_DIR}/${name}: run engines/reference/scripts/make_golden_models.py`})`);
          this.skip();
        }
        exp = g.exp;
        model = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 2 });
        image = await model.encode({ data: g.rgb, width: exp.width, height: exp.height, channels: 3 });
      });
      after(() => model?.dispose());

      it('greedy caption: identical tokens, score, per-token log-probs and points, box', async () => {
        const r = await model.caption(image).result;
        assert.deepEqual(r.tokens, exp.caption.tokens);
        assert.ok(Math.abs(r.score - exp.caption.score) <= TOL * Math.abs(exp.caption.score), `score ${r.score} vs ${exp.caption.score}`);
        checkEvents(r.events, exp.caption, 'caption');
        checkBox(r.box, exp.caption.box, 'caption');
        assert.equal(r.text, model.tokenizer.decode(r.tokens));
      });

      it('streaming events equal the final result', async () => {
        const gen = model.caption(image);
        const seen: TokenEvent[] = [];
        for await (const e of gen) seen.push(e);
        const r = await gen.result;
        assert.deepEqual(seen, r.events);
        assert.deepEqual(seen.map((e) => e.token), exp.caption.tokens);
      });

      it('referring (text API): the golden token rows, box, per-token points, mask and IoU', async () => {
        const { context, text } = model.tokenizer.referTokens(exp.expression, model.info);
        assert.deepEqual(context, exp.context_tokens);
        assert.deepEqual(text, exp.text_tokens);
        const r = await model.refer(image, exp.expression, { mask: true });
        assert.deepEqual(r.tokens, exp.refer.tokens);
        assert.ok(Math.abs(r.score - exp.refer.score) <= TOL * Math.abs(exp.refer.score), `score ${r.score} vs ${exp.refer.score}`);
        checkEvents(r.events, exp.refer, 'refer');
        checkBox(r.box, exp.refer.box, 'refer');
        assert.ok(r.mask && r.maskScore !== undefined);
        assert.ok(Math.abs(r.maskScore - exp.refer.iou) <= TOL * Math.abs(exp.refer.iou) + 1e-6, `iou ${r.maskScore} vs ${exp.refer.iou}`);
        assert.deepEqual([r.mask.width, r.mask.height], [exp.width, exp.height]);
        const ref = Buffer.from(exp.refer.mask_b64, 'base64');
        const ours = r.mask.toBitmap();
        let diff = 0;
        for (let i = 0; i < ref.length; i++) if ((ours[i] ? 1 : 0) !== ref[i]) diff++;
        const budget = exp.refer.mask_fraction_near_zero + 1e-4;
        assert.ok(diff / ref.length <= budget, `refer mask: ${diff} pixels differ (budget ${budget})`);
      });
    });
  }
});
