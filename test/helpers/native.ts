/**
 * When the addon and a model are expected. The addon is required once native/pipeline/pipeline.cc exists (the
 * build makes pixelllm.node then) or when PIXELLLM_NATIVE names one; model tests need a model directory:
 * PIXELLLM_TEST_MODEL, or the shipped demo model once it exists.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './paths';

export function addonExpected(): boolean {
  return Boolean(process.env.PIXELLLM_NATIVE) || existsSync(path.join(ROOT, 'native', 'pipeline', 'pipeline.cc'));
}

export function testModelDir(): string | undefined {
  const env = process.env.PIXELLLM_TEST_MODEL;
  if (env) return env;
  const demo = path.join(ROOT, 'engines', 'demo');
  const complete = ['config.json', 'model.safetensors', 'tokenizer.json'].every((f) => existsSync(path.join(demo, f)));
  return complete ? demo : undefined;
}
