/**
 * Bad-input matrix, images: corrupt / truncated files, empty and degenerate sizes, decompression bombs (headers
 * that claim huge sizes), the pixel limit, unreadable paths, and odd-but-valid formats (16-bit, CMYK, animated,
 * 1x1) that must decode. Every bad case fails with a typed PixelLLMError and a stable code; after each case the
 * process is alive and the model still gives the golden caption.
 */
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { ErrorCode, ImageInput, ImageOptions } from '../../lib';
import { expectCode, gifHeaderBomb, jpegWithSize, loadGolden, pngHeaderBomb, stillAnswers } from './bad-input-helpers';
import type { Golden } from './bad-input-helpers';

describe('bad input: images', function () {
  this.timeout(120_000);
  let g: Golden;
  let png: Buffer;
  let jpeg: Buffer;
  let tmp: string;

  before(async function () {
    g = await loadGolden(this);
    const src = sharp(g.rgb, { raw: { width: g.exp.width, height: g.exp.height, channels: 3 } });
    png = await src.clone().png().toBuffer();
    jpeg = await src.clone().jpeg({ quality: 90 }).toBuffer();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pixelllm-bad-image-'));
  });
  after(() => {
    g?.model.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async function () {
    if (g) await stillAnswers(g);
  });

  const bad: Array<[string, ErrorCode, () => ImageInput, ImageOptions?]> = [
    ['random bytes', 'INVALID_IMAGE', () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251))],
    ['PNG signature then garbage', 'INVALID_IMAGE', () => Buffer.concat([png.subarray(0, 8), Buffer.alloc(200, 0x41)])],
    ['PNG truncated to half', 'INVALID_IMAGE', () => png.subarray(0, png.length >> 1)],
    ['PNG truncated after IHDR', 'INVALID_IMAGE', () => png.subarray(0, 33)],
    ['JPEG truncated to half', 'INVALID_IMAGE', () => jpeg.subarray(0, jpeg.length >> 1)],
    ['JPEG SOI marker only', 'INVALID_IMAGE', () => jpeg.subarray(0, 4)],
    ['empty buffer', 'INVALID_IMAGE', () => Buffer.alloc(0)],
    ['raw 0x0', 'INVALID_IMAGE', () => ({ data: Buffer.alloc(0), width: 0, height: 0, channels: 3 })],
    ['raw 5x0', 'INVALID_IMAGE', () => ({ data: Buffer.alloc(0), width: 5, height: 0, channels: 3 })],
    ['raw fractional width', 'INVALID_IMAGE', () => ({ data: Buffer.alloc(9), width: 1.5, height: 2, channels: 3 })],
    ['raw data shorter than width*height*channels', 'INVALID_IMAGE', () => ({ data: Buffer.alloc(10), width: 4, height: 4, channels: 3 })],
    ['raw 5 channels', 'INVALID_IMAGE', () => ({ data: Buffer.alloc(80), width: 4, height: 4, channels: 5 as 3 })],
    ['raw 30000x30000 (over the pixel limit)', 'LIMIT_EXCEEDED', () => ({ data: Buffer.alloc(3), width: 30000, height: 30000, channels: 3 })],
    ['PNG header claiming 30000x30000', 'LIMIT_EXCEEDED', () => pngHeaderBomb(30000, 30000)],
    ['PNG header claiming 2^31-1 x 1 (libpng: corrupt header)', 'INVALID_IMAGE', () => pngHeaderBomb(0x7fffffff, 1)],
    ['JPEG frame claiming 30000x30000', 'LIMIT_EXCEEDED', () => jpegWithSize(jpeg, 30000, 30000)],
    ['JPEG frame claiming 0x0', 'INVALID_IMAGE', () => jpegWithSize(jpeg, 0, 0)],
    ['GIF claiming 65535x65535', 'LIMIT_EXCEEDED', () => gifHeaderBomb(65535, 65535)],
    ['SVG declaring 100000x100000', 'LIMIT_EXCEEDED',
      () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="10" height="10"/></svg>')],
    ['malformed SVG', 'INVALID_IMAGE', () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect')],
    ['image above a caller maxPixels', 'LIMIT_EXCEEDED', () => png, { maxPixels: 1000 }],
    ['maxPixels 0', 'INVALID_ARGUMENT', () => png, { maxPixels: 0 }],
    ['a number instead of an image', 'INVALID_ARGUMENT', () => 42 as unknown as ImageInput],
    ['a missing file', 'INVALID_IMAGE', () => path.join(tmp, 'does-not-exist.png')],
    ['a directory path', 'INVALID_IMAGE', () => tmp],
    ['a text file', 'INVALID_IMAGE', () => {
      const f = path.join(tmp, 'notes.png');
      writeFileSync(f, 'this is not an image\n');
      return f;
    }],
  ];

  for (const [name, code, input, opts] of bad) {
    it(`${name} -> ${code}`, async () => {
      await expectCode(code, () => g.model.encode(input(), opts));
    });
  }

  it('a bad image given straight to caption() -> INVALID_IMAGE (the stream rejects, nothing is emitted)', async () => {
    const gen = g.model.caption(png.subarray(0, 100));
    const seen: unknown[] = [];
    await expectCode('INVALID_IMAGE', async () => {
      for await (const e of gen) seen.push(e);
    });
    assert.equal(seen.length, 0);
  });

  // Odd but valid inputs decode (to 8-bit sRGB at their own size) and the model answers.
  const good: Array<[string, () => Promise<Buffer>, number, number]> = [
    ['1x1 PNG', () => sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).png().toBuffer(), 1, 1],
    ['16-bit PNG', () => sharp(png).toColourspace('rgb16').png().toBuffer(), 0, 0],
    ['CMYK JPEG', () => sharp(png).toColourspace('cmyk').jpeg().toBuffer(), 0, 0],
    ['grey + alpha PNG', () => sharp(png).greyscale().ensureAlpha(0.5).png().toBuffer(), 0, 0],
    ['animated GIF (first frame)', async () => {
      const frame = (c: string) => sharp({ create: { width: 32, height: 24, channels: 3, background: c } }).png().toBuffer();
      return sharp([await frame('#ff0000'), await frame('#0000ff')], { join: { animated: true } }).gif().toBuffer();
    }, 32, 24],
  ];
  for (const [name, make, w, h] of good) {
    it(`accepts ${name}`, async () => {
      const buf = await make();
      const img = await g.model.encode(buf);
      assert.deepEqual([img.width, img.height], w ? [w, h] : [g.exp.width, g.exp.height]);
      const r = await g.model.caption(img).result;
      assert.ok(r.tokens.length > 0 && r.events.every((e) => [...e.point, ...e.box].every(Number.isFinite)));
    });
  }
});
