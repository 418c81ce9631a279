/**
 * render (lib/render.ts + lib/render-svg.ts): output size, mask colouring, label layout, escaping. Needs no model:
 * the example scene's own annotations stand in for model output.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { Mask } from '../lib/masks';
import { PALETTE, captionItems, maskLayer, render, renderScale } from '../lib/render';
import { buildSvg, groupWords, placeLabel, wrapText, textWidth } from '../lib/render-svg';
import type { Rect } from '../lib/render-svg';
import type { Box, CaptionResult, Point } from '../lib/types';
import { ROOT } from './helpers/paths';

const SCENE = path.join(ROOT, 'examples', 'scenes', 'shapes_wide');
const ann = JSON.parse(readFileSync(`${SCENE}.json`, 'utf8')) as {
  width: number;
  height: number;
  objects: { box: Box; mask_rle: { size: [number, number]; counts: string }; caption: string }[];
};

function hexRgb(hex: string): number[] {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

describe('render', function () {
  this.timeout(30_000);

  it('scales small images up to minSide and adds a footer for the text', async () => {
    assert.equal(renderScale(517, 344), 768 / 517);
    assert.equal(renderScale(2000, 1000), 1);
    assert.equal(renderScale(300, 200, 0), 1);
    const png = await render(`${SCENE}.png`, { footer: 'a small red square' });
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 768);
    assert.ok(meta.height! > Math.round(344 * (768 / 517)), 'footer below the image');
    const plain = await sharp(await render(`${SCENE}.png`, {}, { minSide: 0 })).metadata();
    assert.deepEqual([plain.width, plain.height], [517, 344]);
  });

  it('paints each mask in its object colour, the rest of the image unchanged', async () => {
    const masks = ann.objects.map((o) => Mask.fromRLE(o.mask_rle));
    const png = await render(`${SCENE}.png`, { objects: masks.map((mask) => ({ mask })) }, { minSide: 0, maskOpacity: 0.6 });
    const out = await sharp(png).removeAlpha().raw().toBuffer();
    const src = await sharp(`${SCENE}.png`).removeAlpha().raw().toBuffer();
    const w = ann.width;
    // The interior pixel of object k moves towards palette colour k; a pixel far from every object stays put.
    masks.forEach((m, k) => {
      const bits = m.toBitmap();
      const [x0, y0, x1, y1] = m.bounds()!;
      let best = -1;
      for (let y = y0 + 3; y < y1 - 3 && best < 0; y++) {
        for (let x = x0 + 3; x < x1 - 3; x++) {
          const ok = [[0, 0], [3, 0], [-3, 0], [0, 3], [0, -3]].every(([dx, dy]) => bits[(y + dy) * w + x + dx]);
          if (ok && masks.every((o, j) => j === k || !o.toBitmap()[y * w + x])) {
            best = y * w + x;
            break;
          }
        }
      }
      if (best < 0) return; // no clean interior pixel (tiny or fully overlapped object)
      const target = hexRgb(PALETTE[k]);
      for (let c = 0; c < 3; c++) {
        const expect = 0.6 * target[c] + 0.4 * src[best * 3 + c];
        assert.ok(Math.abs(out[best * 3 + c] - expect) <= 2, `object ${k} channel ${c}: ${out[best * 3 + c]} vs ${expect}`);
      }
    });
    const union = new Uint8Array(w * ann.height);
    for (const m of masks) m.toBitmap().forEach((v, i) => (union[i] |= v));
    let far = 0;
    for (let i = 0; i < union.length && far < 50; i += 97) {
      const y = Math.floor(i / w);
      const x = i % w;
      let near = false;
      for (let dy = -3; dy <= 3 && !near; dy++) for (let dx = -3; dx <= 3 && !near; dx++) near = Boolean(union[(y + dy) * w + x + dx]);
      if (near || x < 3 || y < 3 || x >= w - 3 || y >= ann.height - 3) continue;
      far++;
      for (let c = 0; c < 3; c++) assert.equal(out[i * 3 + c], src[i * 3 + c]);
    }
    assert.ok(far >= 20);
  });

  it('draws a mask layer with an opaque outline and a translucent inside', () => {
    const bits = new Uint8Array(20 * 20);
    for (let y = 5; y < 15; y++) for (let x = 5; x < 15; x++) bits[y * 20 + x] = 1;
    const layer = maskLayer([{ mask: new Mask(bits, 20, 20), colour: '#ff0000' }], 20, 20, 0.4);
    const alpha = (x: number, y: number) => layer[(y * 20 + x) * 4 + 3];
    assert.equal(alpha(0, 0), 0);
    assert.equal(alpha(5, 10), Math.round(0.95 * 255));
    assert.equal(alpha(10, 10), Math.round(0.4 * 255));
    assert.deepEqual([...layer.subarray((10 * 20 + 10) * 4, (10 * 20 + 10) * 4 + 3)], [255, 0, 0]);
  });

  it('refuses masks of another size than the image', async () => {
    await assert.rejects(render(`${SCENE}.png`, { objects: [{ mask: new Mask(new Uint8Array(4), 2, 2) }] }), /mask is 2x2/);
  });

  it('labels words at their points (grouping nearby consecutive words), escapes text, fades the trace', () => {
    const words: { text: string; point: Point }[] = [
      { text: 'a', point: [100, 100] },
      { text: 'red', point: [102, 101] },
      { text: 'circle', point: [101, 99] },
      { text: '<star>', point: [300, 200] },
    ];
    const groups = groupWords(words, 20);
    assert.deepEqual(groups.map((g) => g.text), ['a red circle', '<star>']);
    const svg = buildSvg({ width: 400, height: 300, footerHeight: 0, fontSize: 16, words, boxes: [{ box: [10, 20, 60, 80], label: 'a & b', colour: '#e6194b' }] });
    assert.match(svg, />a red circle</);
    assert.match(svg, />&lt;star&gt;</);
    assert.match(svg, />a &amp; b</);
    assert.match(svg, /paint-order="stroke"/);
    const opacities = [...svg.matchAll(/stroke="#ffe119" stroke-opacity="([\d.]+)"/g)].map((m) => Number(m[1]));
    assert.equal(opacities.length, 3);
    assert.ok(opacities[0] < opacities[1] && opacities[1] < opacities[2], `older segments are more transparent: ${opacities}`);
    // parses as SVG
    return sharp(Buffer.from(svg)).png().toBuffer();
  });

  it('places labels without overlaps when there is room', () => {
    const taken: Rect[] = [];
    const rects = [0, 1, 2, 3, 4, 5].map(() => placeLabel([200, 150], 60, 18, taken, 400, 300, 6));
    for (let i = 0; i < rects.length; i++) {
      for (let j = i + 1; j < rects.length; j++) {
        const a = rects[i];
        const b = rects[j];
        const sep = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
        assert.ok(sep, `labels ${i} and ${j} overlap`);
      }
      assert.ok(rects[i].x >= 0 && rects[i].y >= 0 && rects[i].x + rects[i].w <= 400 && rects[i].y + rects[i].h <= 300);
    }
  });

  it('puts a label right of its point when that spot is free (no rounding noise at the image edge)', () => {
    const r = placeLabel([429.3, 382.7], textWidth('a small purple star', 16), 19.2, [], 768, 768, 7.2);
    assert.ok(r.x > 429.3 && Math.abs(r.y + r.h / 2 - 382.7) < 1e-9, JSON.stringify(r));
  });

  it('wraps the footer text to the width', () => {
    const text = 'in this picture we can see a medium yellow star below a yellow circle and a small orange triangle';
    const lines = wrapText(text, 200, 14);
    assert.ok(lines.length > 2);
    assert.equal(lines.join(' '), text);
    for (const l of lines) assert.ok(textWidth(l, 14) <= 200 || !l.includes(' '));
  });

  it('captionItems: tokens joined into words, the text as footer, the region box', () => {
    const ev = (index: number, text: string, point: Point) => ({ index, token: index, text, point, box: [0, 0, 1, 1] as Box, logprob: 0 });
    const events = [ev(0, 'a', [1, 2]), ev(1, ' red', [3, 4]), ev(2, ' ci', [5, 6]), ev(3, 'rcle', [9, 9]), ev(4, '.', [9, 9]), ev(5, '', [7, 8])];
    const result: CaptionResult = { text: 'a red circle.', tokens: [1, 2, 3, 4, 5, 6], events, score: -0.1 };
    const items = captionItems(result, [0, 0, 10, 10]);
    assert.deepEqual(items.words, [{ text: 'a', point: [1, 2] }, { text: 'red', point: [3, 4] }, { text: 'circle.', point: [5, 6] }]);
    assert.equal(items.footer, 'a red circle.');
    assert.deepEqual(items.objects?.[0].box, [0, 0, 10, 10]);
  });
});
