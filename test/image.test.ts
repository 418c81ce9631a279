import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { InvalidArgumentError, InvalidImageError, LimitExceededError, loadImage } from '../lib';
import { scratch } from './helpers/paths';

/** A 4x3 RGB8 test pattern with distinct pixels. */
const W = 4;
const H = 3;
const RGB = Buffer.from(Array.from({ length: W * H * 3 }, (_, i) => (i * 19) % 256));
const raw = (data: Buffer, channels: 1 | 2 | 3 | 4, width = W, height = H) => sharp(data, { raw: { width, height, channels } });

describe('loadImage', () => {
  let tmp: ReturnType<typeof scratch>;
  before(() => (tmp = scratch()));
  after(() => tmp.cleanup());

  it('decodes a PNG file path to the exact RGB8 pixels', async () => {
    const file = path.join(tmp.dir, 'rgb.png');
    writeFileSync(file, await raw(RGB, 3).png().toBuffer());
    const img = await loadImage(file);
    assert.equal(img.width, W);
    assert.equal(img.height, H);
    assert.deepEqual(img.data, RGB);
  });

  it('decodes encoded bytes (Buffer and Uint8Array)', async () => {
    const png = await raw(RGB, 3).png().toBuffer();
    assert.deepEqual((await loadImage(png)).data, RGB);
    assert.deepEqual((await loadImage(new Uint8Array(png))).data, RGB);
  });

  it('takes a sharp instance without changing it', async () => {
    const png = await raw(RGB, 3).png().toBuffer();
    const s = sharp(png);
    assert.deepEqual((await loadImage(s)).data, RGB);
    assert.deepEqual((await loadImage(s.resize(2, 2))).width, 2);
  });

  it('hands raw RGB8 over without a copy', async () => {
    const data = Buffer.from(RGB);
    const img = await loadImage({ data, width: W, height: H, channels: 3 });
    assert.equal(img.data.buffer, data.buffer);
    const u8 = new Uint8Array(RGB);
    const img2 = await loadImage({ data: u8, width: W, height: H, channels: 3 });
    assert.equal(img2.data.buffer, u8.buffer);
  });

  it('applies EXIF orientation', async () => {
    // 3x2, top-left pixel red; orientation 6 = rotate 90 degrees clockwise -> 2x3, red at top-right.
    const base = Buffer.alloc(3 * 2 * 3);
    base[0] = 255;
    const jpg = await raw(base, 3, 3, 2).withMetadata({ orientation: 6 }).png().toBuffer();
    assert.equal((await sharp(jpg).metadata()).orientation, 6);
    const img = await loadImage(jpg);
    assert.deepEqual([img.width, img.height], [2, 3]);
    assert.deepEqual(Array.from(img.data.subarray(3, 6)), [255, 0, 0]);
    assert.deepEqual(Array.from(img.data.subarray(0, 3)), [0, 0, 0]);
  });

  it('expands grayscale (file and raw) to RGB', async () => {
    const gray = Buffer.from([0, 50, 100, 150, 200, 250]);
    const png = await raw(gray, 1, 3, 2).toColourspace('b-w').png().toBuffer();
    const meta = await sharp(png).metadata();
    assert.equal(meta.channels, 1);
    const expected = Array.from(gray).flatMap((v) => [v, v, v]);
    assert.deepEqual(Array.from((await loadImage(png)).data), expected);
    assert.deepEqual(Array.from((await loadImage({ data: gray, width: 3, height: 2, channels: 1 })).data), expected);
  });

  it('flattens alpha onto white by default, or onto a given background', async () => {
    const rgba = Buffer.from([255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 128]);
    const png = await raw(rgba, 4, 3, 1).png().toBuffer();
    assert.deepEqual(Array.from((await loadImage(png)).data), [255, 0, 0, 255, 255, 255, 127, 255, 127]);
    const onBlack = await loadImage({ data: rgba, width: 3, height: 1, channels: 4 }, { background: [0, 0, 0] });
    assert.deepEqual(Array.from(onBlack.data), [255, 0, 0, 0, 0, 0, 0, 128, 0]);
  });

  it('converts 16-bit images to 8 bits', async () => {
    const u16 = Uint16Array.from({ length: W * H * 3 }, (_, i) => i * 7 * 257); // exact in 8 bits: v / 257
    const png16 = await sharp(u16, { raw: { width: W, height: H, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(png16).metadata()).depth, 'ushort');
    const expected = Array.from(u16, (v) => v / 257);
    assert.deepEqual(Array.from((await loadImage(png16)).data), expected);
    assert.deepEqual(Array.from((await loadImage({ data: u16, width: W, height: H, channels: 3 })).data), expected);
  });

  it('converts CMYK to sRGB', async () => {
    const cmyk = await sharp({ create: { width: 2, height: 2, channels: 3, background: { r: 200, g: 30, b: 40 } } })
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer();
    assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
    const img = await loadImage(cmyk);
    assert.equal(img.data.length, 2 * 2 * 3);
    const [r, g, b] = img.data;
    assert.ok(r > 150 && g < 80 && b < 80, `expected a red, got ${r},${g},${b}`);
  });

  it('rejects corrupt, truncated, empty and missing input with InvalidImageError', async () => {
    await assert.rejects(loadImage(Buffer.from('not an image at all')), InvalidImageError);
    const jpg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#36a' } }).jpeg().toBuffer();
    await assert.rejects(loadImage(jpg.subarray(0, jpg.length >> 1)), InvalidImageError);
    await assert.rejects(loadImage(Buffer.alloc(0)), InvalidImageError);
    await assert.rejects(loadImage(path.join(tmp.dir, 'missing.png')), { code: 'INVALID_IMAGE', message: /missing\.png/ });
  });

  it('rejects raw input of the wrong length or shape with InvalidImageError', async () => {
    await assert.rejects(loadImage({ data: Buffer.alloc(10), width: W, height: H, channels: 3 }), InvalidImageError);
    await assert.rejects(loadImage({ data: Buffer.alloc(0), width: 0, height: 0, channels: 3 }), InvalidImageError);
    await assert.rejects(loadImage({ data: Buffer.alloc(12), width: 2, height: 2, channels: 5 as 3 }), InvalidImageError);
  });

  it('enforces the pixel limit with LimitExceededError', async () => {
    const png = await raw(RGB, 3).png().toBuffer();
    await assert.rejects(loadImage(png, { maxPixels: W * H - 1 }), LimitExceededError);
    await assert.rejects(loadImage({ data: RGB, width: W, height: H, channels: 3 }, { maxPixels: 5 }), LimitExceededError);
    assert.equal((await loadImage(png, { maxPixels: W * H })).width, W);
  });

  it('rejects values that are no image input with InvalidArgumentError', async () => {
    await assert.rejects(loadImage(42 as never), InvalidArgumentError);
    await assert.rejects(loadImage(RGB, { maxPixels: -1 }), InvalidArgumentError);
    await assert.rejects(loadImage(RGB, { background: [0, 0] as never }), InvalidArgumentError);
  });
});
