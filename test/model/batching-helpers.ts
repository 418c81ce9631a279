/** Batched vs unbatched results (in-flight batching changes float summation order, nothing else). */
import * as assert from 'node:assert/strict';
import type { Box, CaptionResult, ReferResult, TokenEvent } from '../../lib';

export const EXACT = 1e-5;

export type Outcome = CaptionResult | ReferResult;

function near(a: number, b: number): boolean {
  return Math.abs(a - b) <= EXACT * Math.max(1, Math.abs(b));
}

/** Tokens identical; score, per-token log-probs, points and the box within 1e-5 (relative above 1). */
export function checkSame(got: Outcome, want: Outcome, what: string): void {
  assert.deepEqual(got.tokens, want.tokens, `${what}: tokens`);
  assert.ok(near(got.score, want.score), `${what}: score ${got.score} vs ${want.score}`);
  assert.equal(got.events.length, want.events.length, `${what}: events`);
  got.events.forEach((e: TokenEvent, i: number) => {
    const w = want.events[i];
    assert.ok(near(e.logprob, w.logprob), `${what}: log-prob ${i} ${e.logprob} vs ${w.logprob}`);
    e.box.forEach((v: number, k: number) => assert.ok(near(v, w.box[k]), `${what}: point ${i} ${e.box} vs ${w.box}`));
  });
  const gb = got.box as Box | undefined, wb = want.box as Box | undefined;
  assert.equal(gb === undefined, wb === undefined, `${what}: box presence`);
  if (gb && wb) gb.forEach((v: number, k: number) => assert.ok(near(v, wb[k]), `${what}: box ${gb} vs ${wb}`));
}
