/**
 * When the addon and a model are expected. The addon is required once native/pipeline/pipeline.cc exists (the
 * build makes pixelllm.node then) or when PIXELLLM_NATIVE names one; model tests need a model directory:
 * PIXELLLM_TEST_MODEL, else the shipped demo model once it exists, else build/golden/bert_s0_h384.
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
  const complete = (dir: string) => ['config.json', 'model.safetensors', 'tokenizer.json'].every((f) => existsSync(path.join(dir, f)));
  // The shipped demo model, else the tiny golden GIT model that .ci/run makes (make_golden_models.py).
  return [path.join(ROOT, 'engines', 'demo'), path.join(ROOT, 'build', 'golden', 'bert_s0_h384')].find(complete);
}
