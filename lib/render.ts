/**
 * Draws what the model sees onto the image and returns a PNG (sharp + an SVG composite):
 *   - each generated word at its point (a label with a dark halo), a trace through the successive points that
 *     fades from old (transparent) to new (opaque);
 *   - boxes with label tags and translucent masks with an outline, one colour per object (item i of `objects`
 *     gets colour i, for its box and its mask);
 *   - optionally the full text in a footer under the image.
 * Small images are enlarged (the longer side to `minSide`, default 768 px) so the labels stay readable; every
 * coordinate is given in pixels of the ORIGINAL image and scaled here.
 */
import sharp from 'sharp';
import { InvalidArgumentError } from './errors';
import { loadImage } from './image';
import type { Mask } from './masks';
import { buildSvg, colourFor, footerHeight } from './render-svg';
import type { Box, CaptionResult, DenseCaption, ImageInput, Point, ReferResult, SegmentResult } from './types';

export { PALETTE, colourFor } from './render-svg';

export interface RenderObject {
  box?: Box;
  mask?: Mask;
  label?: string;
  /** CSS colour '#rrggbb'; default: the palette colour of the object's index. */
  colour?: string;
}

export interface RenderItems {
  /** Words at their points (drawn as labels, linked by the fading trace in this order). */
  words?: { text: string; point: Point }[];
  /** Bare points (a trace without labels). */
  points?: Point[];
  /** Objects: a box and/or a mask each, one colour per object. */
  objects?: RenderObject[];
  /** Text for a footer under the image (e.g. the whole caption). */
  footer?: string;
}

export interface RenderOptions {
  /** The longer side of the output is at least this (small images are enlarged); 0 = keep the size. Default 768. */
  minSide?: number;
  /** Mask fill opacity 0..1 (default 0.4); the outline is drawn opaque. */
  maskOpacity?: number;
}

/** Output scale for an image of (w, h). */
export function renderScale(width: number, height: number, minSide = 768): number {
  const long = Math.max(width, height);
  return minSide > long ? minSide / long : 1;
}

function hexRgb(hex: string): [number, number, number] {
  if (!/^#[0-9a-fA-F]{6}$/.test(hex)) throw new InvalidArgumentError(`colour must be '#rrggbb', got ${hex}`);
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/**
 * The masks as one RGBA layer of the output size (W x H): each mask, in order, blended "over" with its colour at
 * `opacity`, and its outline (output pixels inside whose 2-pixel neighbourhood leaves the mask) nearly opaque.
 */
export function maskLayer(masks: { mask: Mask; colour: string }[], W: number, H: number, opacity = 0.4): Buffer {
  const out = Buffer.alloc(W * H * 4);
  for (const { mask, colour } of masks) {
    const [r, g, b] = hexRgb(colour);
    const { width: w, height: h } = mask;
    const bits = mask.toBitmap();
    const xs = Int32Array.from({ length: W }, (_, X) => Math.min(w - 1, Math.floor(((X + 0.5) * w) / W)));
    const ys = Int32Array.from({ length: H }, (_, Y) => Math.min(h - 1, Math.floor(((Y + 0.5) * h) / H)));
    const at = (X: number, Y: number): number => (X < 0 || Y < 0 || X >= W || Y >= H ? 1 : bits[ys[Y] * w + xs[X]]);
    for (let Y = 0; Y < H; Y++) {
      for (let X = 0; X < W; X++) {
        if (!at(X, Y)) continue;
        const edge = !at(X - 1, Y) || !at(X + 1, Y) || !at(X, Y - 1) || !at(X, Y + 1) || !at(X - 2, Y) || !at(X + 2, Y) || !at(X, Y - 2) || !at(X, Y + 2);
        const a = edge ? 0.95 : opacity;
        const i = (Y * W + X) * 4;
        const da = out[i + 3] / 255;
        const oa = a + da * (1 - a);
        for (const [k, c] of [[0, r], [1, g], [2, b]] as const) out[i + k] = Math.round((c * a + out[i + k] * da * (1 - a)) / oa);
        out[i + 3] = Math.round(oa * 255);
      }
    }
  }
  return out;
}

/** A PNG of `input` with `items` drawn on it. */
export async function render(input: ImageInput, items: RenderItems, options: RenderOptions = {}): Promise<Buffer> {
  const img = await loadImage(input);
  const { width, height } = img;
  const s = renderScale(width, height, options.minSide ?? 768);
  const W = Math.round(width * s);
  const H = Math.round(height * s);
  const fontSize = Math.round(Math.min(22, Math.max(12, Math.max(W, H) / 48)));
  const sp = (p: Point): Point => [p[0] * s, p[1] * s];
  const objects = (items.objects ?? []).map((o, i) => ({ ...o, colour: o.colour ?? colourFor(i) }));
  for (const o of objects) {
    if (o.mask && (o.mask.width !== width || o.mask.height !== height)) {
      throw new InvalidArgumentError(`a mask is ${o.mask.width}x${o.mask.height}, the image ${width}x${height}`);
    }
  }
  const words = [
    ...(items.points ?? []).map((p) => ({ text: '', point: sp(p) })),
    ...(items.words ?? []).map((w) => ({ text: w.text, point: sp(w.point) })),
  ];
  const fh = footerHeight(items.footer, W, fontSize);
  const svg = buildSvg({
    width: W,
    height: H,
    footerHeight: fh,
    fontSize,
    words,
    boxes: objects.filter((o) => o.box).map((o) => ({ box: o.box!.map((v) => v * s) as Box, label: o.label, colour: o.colour })),
    footer: items.footer,
  });
  const layers: sharp.OverlayOptions[] = [];
  const masks = objects.filter((o) => o.mask).map((o) => ({ mask: o.mask!, colour: o.colour }));
  if (masks.length) layers.push({ input: maskLayer(masks, W, H, options.maskOpacity ?? 0.4), raw: { width: W, height: H, channels: 4 }, top: 0, left: 0 });
  layers.push({ input: Buffer.from(svg), top: 0, left: 0 });
  let base = sharp(img.data, { raw: { width, height, channels: 3 } });
  if (s !== 1) base = sharp(await base.resize(W, H, { kernel: 'cubic' }).png().toBuffer());
  if (fh) base = sharp(await base.extend({ bottom: fh, background: '#151515' }).png().toBuffer());
  return base.composite(layers).png().toBuffer();
}

// ---- what each task draws -------------------------------------------------------------------------------------

/**
 * The words of a generation at their points: a token whose text starts with whitespace (or the first one) starts
 * a word, the others (WordPiece continuations, punctuation) join it; a word sits at its first token's point.
 */
export function wordsOf(events: { text: string; point: Point }[]): { text: string; point: Point }[] {
  const words: { text: string; point: Point }[] = [];
  for (const e of events) {
    if (e.text.trim() === '') continue;
    if (words.length === 0 || /^\s/.test(e.text)) words.push({ text: e.text.trim(), point: e.point });
    else words[words.length - 1].text += e.text.trim();
  }
  return words;
}

/** caption / describe: the words at their points (+ the described box), the text in the footer. */
export function captionItems(result: CaptionResult, box?: Box): RenderItems {
  return {
    words: wordsOf(result.events),
    objects: box ? [{ box, label: 'region' }] : [],
    footer: result.text,
  };
}

/** refer: the box labelled with the expression, and the mask. */
export function referItems(expression: string, result: ReferResult): RenderItems {
  return { objects: [{ box: result.box, mask: result.mask, label: expression }] };
}

export function segmentItems(result: SegmentResult): RenderItems {
  return { objects: [{ box: result.box, mask: result.mask, label: `mask (predicted IoU ${result.score.toFixed(2)})` }] };
}

/** dense: every box with its caption; `masks[i]` (optional) belongs to items[i]. */
export function denseItems(items: DenseCaption[], masks?: (Mask | undefined)[]): RenderItems {
  return { objects: items.map((it, i) => ({ box: it.box, mask: masks?.[i], label: it.text })) };
}
