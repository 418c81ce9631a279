/**
 * Default task prompts: a model directory's config.json may carry `task_prompts` (the contexts the model was
 * trained with); caption / describe / denseCaption use them when the call passes no `prompt`, `null` turns them
 * off. Runs on a copy of the committed reference fixture model (test/fixtures/reference/model) with prompts added.
 */
import * as assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ModelFormatError, PixelLLM } from '../../lib';
import type { EncodedImage } from '../../lib';
import { addonExpected } from '../helpers/native';
import { FIXTURES } from '../helpers/paths';

const SRC = path.join(FIXTURES, 'reference');

function modelCopy(edit: (cfg: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pixelllm-prompts-'));
  for (const f of ['model.safetensors', 'tokenizer.json']) copyFileSync(path.join(SRC, 'model', f), path.join(dir, f));
  const cfg = JSON.parse(readFileSync(path.join(SRC, 'model', 'config.json'), 'utf8'));
  edit(cfg);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

describe('task prompts from config.json', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  let model: PixelLLM;
  let image: EncodedImage;

  before(async function () {
    if (!addonExpected()) this.skip();
    const exp = JSON.parse(readFileSync(path.join(SRC, 'expected.json'), 'utf8'));
    const dir = modelCopy((cfg) => {
      cfg.task_prompts = { caption: 'a long image caption:', describe: 'an object of', dense: 'an object of' };
    });
    dirs.push(dir);
    model = await PixelLLM.load(dir, { backend: 'cpu', threads: 2 });
    image = await model.encode({ data: readFileSync(path.join(SRC, 'image.rgb')), width: exp.width, height: exp.height, channels: 3 });
  });

  after(async () => {
    await model?.dispose();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('exposes the prompts', () => {
    assert.deepEqual(model.taskPrompts, { caption: 'a long image caption:', describe: 'an object of', dense: 'an object of' });
  });

  it('caption without a prompt equals caption with the configured prompt, and differs from no prompt', async () => {
    const byDefault = await model.caption(image).result;
    const explicit = await model.caption(image, { prompt: 'a long image caption:' }).result;
    const none = await model.caption(image, { prompt: null }).result;
    assert.deepEqual(byDefault.tokens, explicit.tokens);
    assert.equal(byDefault.score, explicit.score);
    // The context changes the decoder's prefix, so the scores cannot coincide (tokens may, on a random model).
    assert.notEqual(byDefault.score, none.score);
  });

  it('describe uses its own prompt', async () => {
    const box: [number, number, number, number] = [5, 5, 60, 50];
    const byDefault = await model.describe(image, box).result;
    const explicit = await model.describe(image, box, { prompt: 'an object of' }).result;
    assert.deepEqual(byDefault.tokens, explicit.tokens);
    assert.equal(byDefault.score, explicit.score);
  });

  it('refuses a malformed task_prompts with MODEL_FORMAT', async () => {
    const dir = modelCopy((cfg) => {
      cfg.task_prompts = { caption: 42 };
    });
    dirs.push(dir);
    await assert.rejects(PixelLLM.load(dir), (e: unknown) => e instanceof ModelFormatError && e.code === 'MODEL_FORMAT');
  });
});
