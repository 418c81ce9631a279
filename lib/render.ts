/** Draws results onto the image (boxes, token points, a mask overlay) and writes a PNG, with sharp + SVG. */
import sharp from 'sharp';
import { loadImage } from './image';
import type { Mask } from './masks';
import type { Box, ImageInput, Point } from './types';

export interface RenderItems {
  boxes?: { box: Box; label?: string }[];
  points?: Point[];
  mask?: Mask;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** A PNG of `input` with `items` drawn on it (mask in translucent blue, boxes in red, points in yellow). */
export async function render(input: ImageInput, items: RenderItems): Promise<Buffer> {
  const img = await loadImage(input);
  const { width, height } = img;
  const layers: sharp.OverlayOptions[] = [];
  if (items.mask) {
    const m = items.mask.toBitmap();
    const rgba = Buffer.alloc(width * height * 4);
    for (let i = 0; i < m.length; i++) {
      if (m[i]) rgba.set([30, 144, 255, 110], i * 4);
    }
    layers.push({ input: rgba, raw: { width, height, channels: 4 } });
  }
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 200));
  const shapes: string[] = [];
  for (const { box, label } of items.boxes ?? []) {
    const [x0, y0, x1, y1] = box;
    shapes.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="red" stroke-width="${stroke}"/>`);
    if (label) {
      shapes.push(`<text x="${x0 + 2}" y="${Math.max(12, y0 - 3)}" font-family="sans-serif" font-size="${6 * stroke}" fill="red">${escapeXml(label)}</text>`);
    }
  }
  for (const [x, y] of items.points ?? []) shapes.push(`<circle cx="${x}" cy="${y}" r="${1.5 * stroke}" fill="yellow" stroke="black"/>`);
  if (shapes.length) {
    layers.push({ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join('')}</svg>`) });
  }
  return sharp(img.data, { raw: { width, height, channels: 3 } }).composite(layers).png().toBuffer();
}
