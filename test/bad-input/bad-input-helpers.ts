/**
 * Shared pieces of the bad-input matrix (test/bad-input/*.test.ts): a golden model (build/golden/<case>/, written by
 * engines/reference/scripts/make_golden_models.py) that every case runs against, the check that a case failed with
 * the expected typed error, and the check that the model still answers exactly as before afterwards.
 */
import * as assert from 'node:assert/strict';
import { PixelLLM, PixelLLMError } from '../../lib';
import type { EncodedImage, ErrorCode } from '../../lib';
import { addonExpected } from '../helpers/native';
import { goldenCase } from '../model/golden-helpers';
import type { Expected } from '../model/golden-helpers';

export const CASE = 'bert_s0_h384';

export interface Golden {
  model: PixelLLM;
  image: EncodedImage;
  exp: Expected;
  rgb: Buffer;
  dir: string;
}

/** Loads the golden model (mocha `before`); skips the suite when the addon or the model dir is missing. */
export async function loadGolden(ctx: Mocha.Context): Promise<Golden> {
  const g = goldenCase(CASE);
  if (!addonExpected() || !g) {
    console.log(`      (skipped: ${g ? 'no addon' : `no build/golden/${CASE}: run engines/reference/scripts/make_golden_models.py`})`);
    ctx.skip();
  }
  const model = await PixelLLM.load(g.dir, { backend: 'cpu', threads: 1 });
  const image = await model.encode({ data: g.rgb, width: g.exp.width, height: g.exp.height, channels: 3 });
  return { model, image, exp: g.exp, rgb: g.rgb, dir: g.dir };
}

/**
 * Runs `fn` (sync throw or async rejection both count) and asserts it fails with a PixelLLMError of `code`
 * whose message is not empty.
 */
export async function expectCode(code: ErrorCode, fn: () => unknown): Promise<PixelLLMError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected ${code}, but the call succeeded`);
  assert.ok(caught instanceof PixelLLMError, `expected a PixelLLMError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  assert.ok(caught.message.length > 0);
  return caught;
}

/** The event loop still turns and the model still gives the golden caption (tokens) on the cached image. */
export async function stillAnswers(g: Golden): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  const r = await g.model.caption(g.image).result;
  assert.deepEqual(r.tokens, g.exp.caption.tokens, 'the model no longer answers the golden caption');
}

/** CRC-32 (PNG chunks). */
export function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

export function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A PNG whose IHDR claims width x height (8-bit RGB) with a tiny (wrong) IDAT: a decompression-bomb header. */
export function pngHeaderBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01])),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A copy of a JPEG with its SOF0/SOF2 frame size patched to width x height. */
export function jpegWithSize(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i + 9 < out.length; ) {
    if (out[i] !== 0xff) throw new Error('not a JPEG marker');
    const marker = out[i + 1];
    const len = out.readUInt16BE(i + 2);
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    i += 2 + len;
  }
  throw new Error('no SOF marker');
}

/** A GIF89a whose logical screen and single frame claim width x height (LZW data of one pixel). */
export function gifHeaderBomb(width: number, height: number): Buffer {
  const b = [0x47, 0x49, 0x46, 0x38, 0x39, 0x61];
  const le16 = (v: number) => [v & 0xff, v >> 8];
  b.push(...le16(width), ...le16(height), 0x80, 0, 0, 0, 0, 0, 255, 255, 255); // global palette of 2 colours
  b.push(0x2c, 0, 0, 0, 0, ...le16(width), ...le16(height), 0); // image descriptor
  b.push(2, 2, 0x4c, 0x01, 0, 0x3b); // LZW min code size 2, one tiny sub-block, trailer
  return Buffer.from(b);
}
