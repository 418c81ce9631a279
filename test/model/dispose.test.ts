/**
 * Disposal through the public API: after model.dispose() every task method reports DisposedError (code DISPOSED)
 * the same way -- never a synchronous throw; a rejected promise for encode/refer/segment/denseCaption, and for the
 * Generation of caption/describe a rejected `.result` and an error on the first iteration. Disposed features give
 * DISPOSED on every task of a live model. Encoded features report their native size to V8 (external memory) and
 * take it back on dispose() and when the garbage collector finalizes them (Features.reportedBytes()).
 * Needs a model directory (see helpers/native.ts); skipped without one.
 */
import * as assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import sharp from 'sharp';
import { DisposedError, PixelLLM } from '../../lib';
import type { EncodedImage, Generation } from '../../lib';
import { loadNative } from '../../lib/native';
import { testModelDir } from '../helpers/native';

const W = 64;
const H = 48;
const BOX: [number, number, number, number] = [4, 4, 40, 40];
// Far less than any model's encoder output (the SAM features alone are (size/16)^2 x 256 floats: 200 KB for the
// demo model), far more than the wrapper object: the size V8 must be told about.
const MIN_FEATURE_BYTES = 64 * 1024;

async function testImage(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="100%" height="100%" fill="#eee"/>` +
    `<circle cx="20" cy="20" r="12" fill="red"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

function isDisposed(err: unknown): boolean {
  return err instanceof DisposedError && err.code === 'DISPOSED' && err.message.length > 0;
}

/** Calls `fn` (which must not throw synchronously) and expects its promise to reject with DISPOSED. */
async function rejectsDisposed(what: string, fn: () => Promise<unknown>): Promise<void> {
  let promise: Promise<unknown>;
  try {
    promise = fn();
  } catch (err) {
    assert.fail(`${what} threw synchronously (${String(err)}) instead of rejecting`);
  }
  assert.ok(promise instanceof Promise, `${what} returned no promise`);
  await assert.rejects(promise, isDisposed, `${what} should reject with DISPOSED`);
}

/** A Generation must be returned, then report DISPOSED from `.result` and from its first iteration. */
async function generationDisposed(what: string, make: () => Generation): Promise<void> {
  let first: Generation;
  let second: Generation;
  try {
    first = make();
    second = make();
  } catch (err) {
    assert.fail(`${what} threw synchronously (${String(err)}) instead of returning a Generation`);
  }
  await assert.rejects(first.result, isDisposed, `${what}.result should reject with DISPOSED`);
  const it = second[Symbol.asyncIterator]();
  await assert.rejects(it.next(), isDisposed, `${what}: the first iteration should throw DISPOSED`);
}

async function allTasksReportDisposed(m: PixelLLM, img: EncodedImage, label: string): Promise<void> {
  await rejectsDisposed(`${label} refer`, () => m.refer(img, 'the red circle'));
  await rejectsDisposed(`${label} refer with mask`, () => m.refer(img, 'the red circle', { mask: true }));
  await rejectsDisposed(`${label} segment`, () => m.segment(img, BOX));
  await rejectsDisposed(`${label} denseCaption`, () => m.denseCaption(img));
  await generationDisposed(`${label} caption`, () => m.caption(img));
  await generationDisposed(`${label} describe`, () => m.describe(img, BOX));
}

/** The bytes live features have reported to V8 (Features.reportedBytes: a diagnostic of the addon). */
function reportedBytes(): number {
  return (loadNative() as unknown as { Features: { reportedBytes(): number } }).Features.reportedBytes();
}

/** Runs a full garbage collection (the flag is set at run time: mocha runs without --expose-gc). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Full collections, each followed by a turn of the event loop (finalizers run there), until `done` or `tries`. */
async function collectUntil(done: () => boolean, tries: number): Promise<void> {
  for (let i = 0; i < tries && !done(); i++) {
    collectGarbage();
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('model dispose', function () {
  this.timeout(120_000);
  let dir: string;
  let png: Buffer;

  before(async function () {
    const d = testModelDir();
    if (!d) this.skip();
    dir = d;
    png = await testImage();
  });

  it('every task method of a disposed model reports DISPOSED asynchronously', async () => {
    const m = await PixelLLM.load(dir, { backend: 'cpu', threads: 1 });
    const img = await m.encode(png);
    m.dispose();
    assert.equal(m.disposed, true);
    await rejectsDisposed('encode(image)', () => m.encode(png));
    await rejectsDisposed('encode(EncodedImage)', () => m.encode(img));
    await allTasksReportDisposed(m, img, 'disposed model:');
    await m[Symbol.asyncDispose](); // still fine (idempotent)
  });

  it('disposed features report DISPOSED on every task of a live model', async () => {
    const m = await PixelLLM.load(dir, { backend: 'cpu', threads: 1 });
    try {
      const img = await m.encode(png);
      img.dispose();
      await allTasksReportDisposed(m, img, 'disposed features:');
      const fresh = await m.encode(png); // the model itself still works
      assert.ok((await m.segment(fresh, BOX)).mask.width === W);
    } finally {
      m.dispose();
    }
  });

  it('features report their native size to V8: + on encode, - on dispose() and on finalization', async () => {
    const m = await PixelLLM.load(dir, { backend: 'cpu', threads: 1 });
    try {
      await collectUntil(() => false, 2); // finalize what earlier tests dropped
      const base = reportedBytes();
      const img = await m.encode(png);
      const size = reportedBytes() - base;
      assert.ok(size >= MIN_FEATURE_BYTES, `encode reported ${size} bytes`);
      img.dispose();
      assert.equal(reportedBytes(), base, 'dispose() takes back what encode reported');
      img.dispose(); // idempotent: nothing taken back twice
      assert.equal(reportedBytes(), base);

      // Dropped without dispose(): the finalizer takes the bytes back. (Encoded in a helper whose frame ends, so
      // that no interpreter register of this function keeps one alive.)
      const dropped = async (): Promise<number> => {
        await Promise.all([m.encode(png), m.encode(png), m.encode(png)]);
        return reportedBytes() - base;
      };
      assert.equal(await dropped(), 3 * size, 'each encode reports the same size');
      // (<=: a late finalizer of an earlier test's features may take back its bytes here too.)
      await collectUntil(() => reportedBytes() <= base, 20);
      assert.ok(reportedBytes() <= base, `finalization left ${reportedBytes() - base} of ${3 * size} bytes reported`);
    } finally {
      m.dispose();
    }
  });
});
