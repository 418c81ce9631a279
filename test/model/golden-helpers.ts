/** The golden model dirs of engines/reference/scripts/make_golden_models.py (build/golden/<case>/) for the tests. */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers/paths';

export const GOLDEN_DIR = process.env.PIXELLLM_GOLDEN_MODELS ?? path.join(ROOT, 'build', 'golden');
export const GOLDEN_CASES = ['bert_s0_h384', 'bert_s1_h300', 't5_s0_h384', 't5_s1_h300'];
export const TOL = 1e-4;
export const BOX_TOL_PX = 0.01;

export interface TaskExpected {
  tokens: number[];
  score: number;
  logprobs: number[];
  corners: number[][];
  box: number[];
  iou: number;
  mask_b64: string;
  mask_fraction_near_zero: number;
}

export interface Expected {
  case: string;
  width: number;
  height: number;
  expression: string;
  context_tokens: number[];
  text_tokens: number[];
  caption: TaskExpected;
  refer: TaskExpected;
}

/** The case's model dir, expected outputs and image, or undefined when not generated. */
export function goldenCase(name: string): { dir: string; exp: Expected; rgb: Buffer } | undefined {
  const dir = path.join(GOLDEN_DIR, name);
  if (!existsSync(path.join(dir, 'expected.json'))) return undefined;
  const exp = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
  return { dir, exp, rgb: readFileSync(path.join(dir, 'image.rgb')) };
}

export function relL2(ours: number[], ref: number[]): number {
  assert.equal(ours.length, ref.length, 'length');
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (ours[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-12);
}

