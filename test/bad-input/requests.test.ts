/**
 * Bad-input matrix, requests: boxes (non-finite, negative, inverted, outside, zero area, malformed) for describe()
 * and segment(), text (empty, 10k characters, control characters, lone surrogates, non-strings) for refer() and
 * prompts, and options (maxTokens, beams, load options). Every case fails with a typed PixelLLMError and a stable
 * code; after each case the process is alive and the model still gives the golden caption.
 */
import * as assert from 'node:assert/strict';
import { PixelLLM } from '../../lib';
import type { Box, ErrorCode } from '../../lib';
import { expectCode, loadGolden, stillAnswers } from './bad-input-helpers';
import type { Golden } from './bad-input-helpers';

describe('bad input: boxes, text, options', function () {
  this.timeout(120_000);
  let g: Golden;

  before(async function () {
    g = await loadGolden(this);
  });
  after(() => g?.model.dispose());
  afterEach(async function () {
    if (g) await stillAnswers(g);
  });

  const W = () => g.exp.width;
  const H = () => g.exp.height;
  const boxes: Array<[string, () => unknown]> = [
    ['NaN', () => [NaN, 0, 10, 10]],
    ['Infinity', () => [0, 0, Infinity, 10]],
    ['-Infinity', () => [-Infinity, 0, 10, 10]],
    ['negative x0', () => [-5, 0, 10, 10]],
    ['negative y0', () => [0, -0.5, 10, 10]],
    ['inverted x', () => [20, 0, 10, 10]],
    ['inverted y', () => [0, 20, 10, 10]],
    ['x1 past the right edge', () => [0, 0, W() + 1, 10]],
    ['wholly outside the image', () => [W() + 10, H() + 10, W() + 20, H() + 20]],
    ['zero width', () => [10, 10, 10, 20]],
    ['zero height', () => [10, 10, 20, 10]],
    ['3 numbers', () => [1, 2, 3]],
    ['a string', () => '0,0,10,10'],
    ['numbers as strings', () => ['0', '0', '10', '10']],
  ];
  for (const [name, box] of boxes) {
    it(`describe: box ${name} -> INVALID_BOX`, async () => {
      await expectCode('INVALID_BOX', () => g.model.describe(g.image, box() as Box).result);
    });
  }
  for (const [name, box] of boxes.filter(([n]) => ['NaN', 'inverted x', 'zero height', 'wholly outside the image'].includes(n))) {
    it(`segment: box ${name} -> INVALID_BOX`, async () => {
      await expectCode('INVALID_BOX', () => g.model.segment(g.image, box() as Box));
    });
  }

  const texts: Array<[string, ErrorCode, () => unknown]> = [
    ['empty', 'INVALID_TEXT', () => ''],
    ['whitespace only', 'INVALID_TEXT', () => ' \t\n '],
    ['10k characters', 'LIMIT_EXCEEDED', () => 'where '.repeat(1667)],
    ['a lone high surrogate', 'INVALID_TEXT', () => '\ud800'],
    ['a lone low surrogate inside words', 'INVALID_TEXT', () => 'where \udc00 is'],
    ['a number', 'INVALID_TEXT', () => 42],
    ['undefined', 'INVALID_TEXT', () => undefined],
  ];
  for (const [name, code, text] of texts) {
    it(`refer: expression ${name} -> ${code}`, async () => {
      await expectCode(code, () => g.model.refer(g.image, text() as string));
    });
  }
  // Text the tokenizer maps to [UNK] (or drops, when its normaliser strips control characters) is not an error by
  // itself: the answer is a finite box, or INVALID_TEXT when nothing is left.
  const odd: Array<[string, string]> = [
    ['10k characters without spaces (one [UNK] word)', 'x'.repeat(10_000)],
    ['control characters only', '\u0000\u0001\u0007\u001b'],
    ['an emoji (a valid surrogate pair)', 'the \u{1F600} circle'],
  ];
  for (const [name, text] of odd) {
    it(`refer: expression ${name} is tokenized, not an error`, async () => {
      try {
        const r = await g.model.refer(g.image, text);
        assert.ok(r.box.every(Number.isFinite));
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'INVALID_TEXT', String(err));
      }
    });
  }

  it('caption: empty prompt -> INVALID_TEXT', async () => {
    await expectCode('INVALID_TEXT', () => g.model.caption(g.image, { prompt: '' }).result);
  });
  it('caption: 10k-character prompt -> LIMIT_EXCEEDED', async () => {
    await expectCode('LIMIT_EXCEEDED', () => g.model.caption(g.image, { prompt: 'is '.repeat(3334) }).result);
  });
  it('caption: prompt with a lone surrogate -> INVALID_TEXT', async () => {
    await expectCode('INVALID_TEXT', () => g.model.caption(g.image, { prompt: 'where \ud800' }).result);
  });

  const options: Array<[string, ErrorCode, Record<string, unknown>]> = [
    ['maxTokens -1', 'INVALID_ARGUMENT', { maxTokens: -1 }],
    ['maxTokens 1.5', 'INVALID_ARGUMENT', { maxTokens: 1.5 }],
    ['maxTokens NaN', 'INVALID_ARGUMENT', { maxTokens: NaN }],
    ['maxTokens 1e9', 'INVALID_ARGUMENT', { maxTokens: 1e9 }],
    ['maxTokens above max_caption_length', 'LIMIT_EXCEEDED', { maxTokens: 17 }],
    ['beams 0', 'INVALID_ARGUMENT', { beams: 0 }],
    ['beams -1', 'INVALID_ARGUMENT', { beams: -1 }],
    ['beams 1000', 'INVALID_ARGUMENT', { beams: 1000 }],
    ['beams "2"', 'INVALID_ARGUMENT', { beams: '2' }],
  ];
  for (const [name, code, opts] of options) {
    it(`caption: ${name} -> ${code}`, async () => {
      await expectCode(code, () => g.model.caption(g.image, opts).result);
    });
  }
  it('denseCaption: maxBoxes -1 -> INVALID_ARGUMENT', async () => {
    await expectCode('INVALID_ARGUMENT', () => g.model.denseCaption(g.image, { maxBoxes: -1 }));
  });

  it('caption: maxTokens 0 means the model default (not an error)', async () => {
    const r = await g.model.caption(g.image, { maxTokens: 0 }).result;
    assert.deepEqual(r.tokens, g.exp.caption.tokens);
  });
  it('caption: maxTokens 1 stops after one token', async () => {
    const r = await g.model.caption(g.image, { maxTokens: 1 }).result;
    assert.equal(r.tokens.length, 1);
  });

  const loads: Array<[string, ErrorCode, () => unknown]> = [
    ['backend "gpu"', 'INVALID_ARGUMENT', () => PixelLLM.load(g.dir, { backend: 'gpu' as 'cpu' })],
    ['threads -1', 'INVALID_ARGUMENT', () => PixelLLM.load(g.dir, { threads: -1 })],
    ['threads 1e6', 'INVALID_ARGUMENT', () => PixelLLM.load(g.dir, { threads: 1e6 })],
    ['backend "tensorrt" without TensorRT', 'BACKEND_UNAVAILABLE', () => PixelLLM.load(g.dir, { backend: 'tensorrt' })],
    ['an empty directory name', 'INVALID_ARGUMENT', () => PixelLLM.load('')],
  ];
  for (const [name, code, fn] of loads) {
    it(`load: ${name} -> ${code}`, async () => {
      await expectCode(code, fn);
    });
  }

  it('a disposed model -> DISPOSED for every call, the others keep working', async () => {
    const other = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 1 });
    other.dispose();
    await expectCode('DISPOSED', () => other.encode(g.rgb));
    await expectCode('DISPOSED', () => other.caption(g.image).result);
    await expectCode('DISPOSED', () => other.refer(g.image, g.exp.expression));
  });
});
