/**
 * Dense captioning end to end through the real addon and the lib/ API against the reference
 * (pixelllm_ref.proposal_head.dense_caption, greedy, the region prompt "an object of") on the same weights and 8-bit
 * image. Model dirs + image.rgb + expected.json come from engines/reference/scripts/fixtures_proposal.py
 * (build/fixtures/proposal/<case>/): demo_random (the demo architecture, random weights) and demo_ckpt (the training
 * checkpoint, when it existed). The image is of a size the pipeline does not resize, so original pixels equal the
 * model's. Tolerances: boxes within 0.01 px, proposal / caption scores rel 1e-4, caption tokens and order identical.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidTextError, LimitExceededError, PixelLLM } from '../../lib';
import type { DenseOptions, EncodedImage } from '../../lib';
import { addonExpected } from '../helpers/native';
import { ROOT } from '../helpers/paths';
import { BOX_TOL_PX, TOL } from './golden-helpers';

const DIR = process.env.PIXELLLM_PROPOSAL_FIXTURES ?? path.join(ROOT, 'build', 'fixtures', 'proposal');

interface DenseExpected {
  width: number;
  height: number;
  prompt: string;
  context_tokens: number[];
  runs: {
    options: Omit<DenseOptions, 'signal' | 'prompt'>;
    items: { box: number[]; score: number; tokens: number[]; caption_score: number; rank_score: number }[];
  }[];
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);
}

for (const name of ['demo_random', 'demo_ckpt']) {
  describe(`dense captioning through the addon (build/fixtures/proposal/${name})`, function () {
    this.timeout(300_000);
    let model: PixelLLM;
    let image: EncodedImage;
    let exp: DenseExpected;

    before(async function () {
      const dir = path.join(DIR, name);
      if (!addonExpected() || !existsSync(path.join(dir, 'expected.json'))) {
        console.log(`      (skipped: ${addonExpected() ? `no ${dir}: run engines/reference/scripts/fixtures_proposal.py` : 'no addon'})`);
        this.skip();
      }
      exp = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as DenseExpected;
      model = await PixelLLM.load(dir, { backend: 'cpu', threads: 2 });
      image = await model.encode({ data: readFileSync(path.join(dir, 'image.rgb')), width: exp.width, height: exp.height, channels: 3 });
    });
    after(() => model?.dispose());

    it('reports the proposal head; the prompt tokenizes to the reference context', () => {
      assert.equal(model.info.hasProposalHead, true);
      assert.deepEqual(model.tokenizer.promptTokens(exp.prompt, model.info), exp.context_tokens);
    });

    it('boxes, proposal scores, captions, caption scores and order equal the reference', async () => {
      for (const run of exp.runs) {
        const items = await model.denseCaption(image, { ...run.options, prompt: exp.prompt });
        const what = JSON.stringify(run.options);
        assert.equal(items.length, run.items.length, `${what}: item count`);
        items.forEach((it, i) => {
          const e = run.items[i];
          const worst = Math.max(...it.box.map((v, k) => Math.abs(v - e.box[k])));
          assert.ok(worst <= BOX_TOL_PX, `${what} #${i}: box off by ${worst} px (${it.box} vs ${e.box})`);
          assert.ok(relErr(it.score, e.score) <= TOL, `${what} #${i}: score ${it.score} vs ${e.score}`);
          assert.deepEqual(it.tokens, e.tokens, `${what} #${i}: tokens`);
          assert.equal(it.text, model.tokenizer.decode(it.tokens));
          assert.ok(relErr(it.captionScore, e.caption_score) <= TOL, `${what} #${i}: caption score ${it.captionScore} vs ${e.caption_score}`);
          const rank = Math.sqrt(Math.max(0, it.score) * Math.exp(it.captionScore));
          assert.ok(relErr(rank, e.rank_score) <= TOL, `${what} #${i}: rank score`);
        });
      }
    });

    it('rejects bad options with typed errors and honours an aborted signal', async () => {
      await assert.rejects(model.denseCaption(image, { maxTokens: model.info.maxCaptionLength + 1 }), LimitExceededError);
      await assert.rejects(model.denseCaption(image, { prompt: '' }), InvalidTextError);
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(model.denseCaption(image, { prompt: exp.prompt, signal: ac.signal }), { code: 'ABORTED' });
    });
  });
}
