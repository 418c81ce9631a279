import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { InvalidArgumentError, Mask, countsToString, decodeCounts, encodeCounts, stringToCounts } from '../lib';
import { FIXTURES } from './helpers/paths';

interface Case {
  name: string;
  width: number;
  height: number;
  bits: string;
  counts: number[];
  compressed: string;
  area: number;
  bbox_xywh: number[];
}

// Made by test/fixtures/rle/make_fixture.py with pycocotools.
const cases: Case[] = JSON.parse(readFileSync(path.join(FIXTURES, 'rle', 'cases.json'), 'utf8'));
const bitsOf = (c: Case) => Uint8Array.from(c.bits, (ch) => (ch === '1' ? 1 : 0));

describe('COCO RLE (agreement with pycocotools)', () => {
  it('has fixture cases', () => assert.ok(cases.length >= 8));

  for (const c of cases) {
    describe(c.name, () => {
      it('encodes the same uncompressed counts', () => {
        assert.deepEqual(encodeCounts(bitsOf(c), c.width, c.height), c.counts);
      });
      it('compresses to the same string as pycocotools.mask.encode', () => {
        assert.equal(countsToString(c.counts), c.compressed);
      });
      it('decompresses the pycocotools string', () => {
        assert.deepEqual(stringToCounts(c.compressed), c.counts);
      });
      it('decodes to the same bits', () => {
        assert.deepEqual(decodeCounts(c.counts, c.width, c.height), bitsOf(c));
        assert.deepEqual(Mask.fromRLE({ size: [c.height, c.width], counts: c.compressed }).toBitmap(), bitsOf(c));
      });
      it('has the same area and bbox as pycocotools', () => {
        const m = new Mask(bitsOf(c), c.width, c.height);
        assert.equal(m.area(), c.area);
        const b = m.bounds();
        const xywh = b ? [b[0], b[1], b[2] - b[0], b[3] - b[1]] : [0, 0, 0, 0];
        assert.deepEqual(xywh, c.bbox_xywh);
      });
    });
  }
});

describe('Mask', () => {
  it('round-trips random masks through both RLE forms', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let t = 0; t < 25; t++) {
      const w = 1 + Math.floor(rand() * 40);
      const h = 1 + Math.floor(rand() * 40);
      const p = rand();
      const bits = Uint8Array.from({ length: w * h }, () => (rand() < p ? 1 : 0));
      const m = new Mask(bits, w, h);
      assert.deepEqual(Mask.fromRLE(m.rle).toBitmap(), bits);
      assert.deepEqual(Mask.fromRLE(m.toRLE({ compressed: false })).toBitmap(), bits);
      assert.deepEqual(m.rle.size, [h, w]);
    }
  });

  it('binarises non-0/1 input', () => {
    const m = new Mask(Uint8Array.from([0, 255, 3, 0]), 2, 2);
    assert.deepEqual(Array.from(m.toBitmap()), [0, 1, 1, 0]);
  });

  it('writes a grayscale PNG of the right size and values', async () => {
    const m = new Mask(Uint8Array.from([1, 0, 0, 0, 1, 0]), 3, 2);
    const png = await m.toPNG();
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 3, 2, 1]);
    const { data } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual(Array.from(data), [255, 0, 0, 0, 255, 0]);
  });

  it('rejects bad input with InvalidArgumentError', () => {
    assert.throws(() => new Mask(new Uint8Array(5), 2, 2), InvalidArgumentError);
    assert.throws(() => decodeCounts([1, 2], 2, 2), /cover 3 pixels/);
    assert.throws(() => decodeCounts([5], 2, 2), InvalidArgumentError);
    assert.throws(() => stringToCounts('0\u0001'), InvalidArgumentError);
    assert.throws(() => Mask.fromRLE({ size: [2, 2], counts: 'P' }), InvalidArgumentError); // continuation, no end
  });
});

describe('Mask on the example scenes (RLE written by the reference with pycocotools)', () => {
  const dir = path.join(FIXTURES, '..', '..', 'examples', 'scenes');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];

  it('decodes every object mask to its recorded area, tight box and the same string', function () {
    if (files.length === 0) this.skip();
    for (const f of files) {
      const scene = JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
      for (const obj of scene.objects) {
        const m = Mask.fromRLE(obj.mask_rle);
        assert.deepEqual([m.width, m.height], [scene.width, scene.height], f);
        assert.equal(m.area(), obj.area, `${f} ${obj.expression}`);
        assert.deepEqual(m.bounds(), obj.box, `${f} ${obj.expression}`);
        assert.equal(m.rle.counts, obj.mask_rle.counts, `${f} ${obj.expression}`);
      }
    }
  });
});
