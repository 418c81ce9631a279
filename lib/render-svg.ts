/**
 * The vector layer of `render` (lib/render.ts): word labels with a halo, a fading trace through the word points,
 * boxes with label tags, and an optional caption footer — as one SVG string in OUTPUT pixels. Pure functions
 * (no sharp), so the layout is testable: labels are placed greedily, each at the first candidate position next
 * to its point that overlaps no label placed before it (box tags are placed first).
 */
import type { Box, Point } from './types';

/** One colour per object (index i -> PALETTE[i % n]); chosen to stay distinct on grey and textured backgrounds. */
export const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#fabed4', '#469990'];
export const TRACE_COLOUR = '#ffe119';
const FONT = "DejaVu Sans, Verdana, Arial, sans-serif";
/** Mean advance of a bold DejaVu Sans character, in em (an estimate: the SVG is rasterised later). */
const CHAR_EM = 0.64;

export function colourFor(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface WordLabel {
  text: string;
  point: Point;
}

export interface BoxLabel {
  box: Box;
  label?: string;
  colour: string;
}

export interface SvgScene {
  width: number;
  height: number;
  /** Extra space under the image for `footer` (already included in nothing: the SVG is width x (height+footer)). */
  footerHeight: number;
  fontSize: number;
  words: WordLabel[];
  boxes: BoxLabel[];
  footer?: string;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

const n1 = (v: number): string => (Math.round(v * 10) / 10).toString();

export function textWidth(text: string, fontSize: number): number {
  return text.length * CHAR_EM * fontSize;
}

function overlap(a: Rect, b: Rect): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

/** Area of `r` outside the image (0 when inside; rounding noise below 1e-6 px² counts as 0). */
function outside(r: Rect, width: number, height: number): number {
  const out = r.w * r.h - overlap(r, { x: 0, y: 0, w: width, h: height });
  return out > 1e-6 ? out : 0;
}

/**
 * Consecutive words whose points lie within `radius` of the group's first point form one label (the words of
 * "a large red circle" usually share a point); a group holds at most `maxWords` words.
 */
export function groupWords(words: WordLabel[], radius: number, maxWords = 4): { text: string; point: Point; members: number[] }[] {
  const groups: { text: string; point: Point; members: number[] }[] = [];
  let cur: { words: string[]; point: Point; members: number[] } | undefined;
  words.forEach((w, i) => {
    const text = w.text.trim();
    if (!text) return;
    if (cur && cur.words.length < maxWords && Math.hypot(w.point[0] - cur.point[0], w.point[1] - cur.point[1]) <= radius) {
      cur.words.push(text);
      cur.members.push(i);
      return;
    }
    if (cur) groups.push({ text: cur.words.join(' '), point: cur.point, members: cur.members });
    cur = { words: [text], point: w.point, members: [i] };
  });
  if (cur) groups.push({ text: cur.words.join(' '), point: cur.point, members: cur.members });
  return groups;
}

/**
 * Places a label of size (w, h) next to `p`: candidates are the 8 directions at 2 distances, then labels stacked
 * above/below on the right and left, then the 8 directions further out; the first that overlaps nothing in
 * `taken` and stays inside the image wins, else the one with the least overlap. Adds the rect to `taken`.
 */
export function placeLabel(p: Point, w: number, h: number, taken: Rect[], width: number, height: number, gap: number): Rect {
  const dirs: [number, number][] = [[1, 0], [0, -1], [0, 1], [-1, 0], [1, -1], [1, 1], [-1, -1], [-1, 1]];
  const cands: { cx: number; cy: number; penalty: number }[] = [];
  const ring = (dist: number) => {
    for (const [dx, dy] of dirs) cands.push({ cx: p[0] + dx * (gap * dist + w / 2), cy: p[1] + dy * (gap * dist + h / 2), penalty: dist });
  };
  ring(1);
  ring(2.2);
  for (let k = 1; k <= 5; k++) {
    for (const side of [1, -1]) {
      for (const dy of [-1, 1]) cands.push({ cx: p[0] + side * (gap + w / 2), cy: p[1] + dy * k * h * 1.05, penalty: 2 + k });
    }
  }
  ring(3.6);
  ring(5.5);
  let best: Rect | undefined;
  let bestCost = Infinity;
  for (const { cx, cy, penalty } of cands) {
    const r = { x: cx - w / 2, y: cy - h / 2, w, h };
    const clash = taken.reduce((s, t) => s + overlap(r, t), 0) + 4 * outside(r, width, height);
    if (clash === 0) {
      taken.push(r);
      return r;
    }
    if (clash + penalty < bestCost) {
      bestCost = clash + penalty;
      best = r;
    }
  }
  taken.push(best!);
  return best!;
}

/** Greedy word wrap to lines of at most `maxWidth` pixels (a longer single word gets a line of its own). */
export function wrapText(text: string, maxWidth: number, fontSize: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next, fontSize) > maxWidth) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines;
}

export function footerHeight(text: string | undefined, width: number, fontSize: number): number {
  if (!text) return 0;
  const lines = wrapText(text, width - 2 * fontSize, fontSize).length;
  return Math.ceil(lines * fontSize * 1.4 + fontSize * 1.2);
}

function luminance(hex: string): number {
  const v = parseInt(hex.slice(1), 16);
  return (0.299 * ((v >> 16) & 255) + 0.587 * ((v >> 8) & 255) + 0.114 * (v & 255)) / 255;
}

/** Text with a dark halo (stroke painted under the fill), readable on any background. */
function haloText(x: number, y: number, text: string, size: number, fill = '#fff', anchor = 'start'): string {
  return `<text x="${n1(x)}" y="${n1(y)}" font-size="${n1(size)}" text-anchor="${anchor}" fill="${fill}" ` +
    `stroke="#000" stroke-opacity="0.8" stroke-width="${n1(size * 0.26)}" stroke-linejoin="round" paint-order="stroke">` +
    `${escapeXml(text)}</text>`;
}

/** The trace: one segment per step between successive word points, opacity rising from old (0.15) to new (0.95). */
function traceSvg(points: Point[], fontSize: number): string[] {
  const out: string[] = [];
  const n = points.length;
  const sw = Math.max(1.5, fontSize / 6);
  for (let i = 1; i < n; i++) {
    const a = points[i - 1];
    const b = points[i];
    const op = n <= 2 ? 0.95 : 0.15 + (0.8 * (i - 1)) / (n - 2);
    const seg = `x1="${n1(a[0])}" y1="${n1(a[1])}" x2="${n1(b[0])}" y2="${n1(b[1])}" stroke-linecap="round"`;
    out.push(`<line ${seg} stroke="#000" stroke-opacity="${(op * 0.6).toFixed(3)}" stroke-width="${n1(sw + 2)}"/>`);
    out.push(`<line ${seg} stroke="${TRACE_COLOUR}" stroke-opacity="${op.toFixed(3)}" stroke-width="${n1(sw)}"/>`);
  }
  points.forEach((p, i) => {
    const op = n <= 1 ? 1 : 0.35 + (0.65 * i) / (n - 1);
    out.push(`<circle cx="${n1(p[0])}" cy="${n1(p[1])}" r="${n1(Math.max(2.5, fontSize * 0.22))}" fill="${TRACE_COLOUR}" ` +
      `fill-opacity="${op.toFixed(3)}" stroke="#000" stroke-opacity="${op.toFixed(3)}" stroke-width="1.2"/>`);
  });
  return out;
}

/**
 * A box's label tag: above the box's top-left corner, else inside its top edge, else under the box (then the same
 * three right-aligned); the first spot that overlaps no earlier tag and stays inside, else the least overlapping.
 */
export function placeTag(box: Box, w: number, h: number, stroke: number, taken: Rect[], width: number, height: number): Rect {
  const [x0, y0, x1, y1] = box;
  const clampX = (x: number): number => Math.min(Math.max(0, x), Math.max(0, width - w));
  const ys = [y0 - h - stroke / 2, y0 + stroke / 2, y1 + stroke / 2];
  const xs = [clampX(x0 - stroke / 2), clampX(x1 + stroke / 2 - w)];
  let best: Rect | undefined;
  let bestCost = Infinity;
  for (const x of xs) {
    for (const y of ys) {
      const r = { x, y, w, h };
      const cost = taken.reduce((s, t) => s + overlap(r, t), 0) + 4 * outside(r, width, height);
      if (cost < bestCost) {
        bestCost = cost;
        best = r;
      }
      if (cost === 0) break;
    }
    if (bestCost === 0) break;
  }
  taken.push(best!);
  return best!;
}

/** The whole vector layer as an SVG document of width x (height + footerHeight). */
export function buildSvg(scene: SvgScene): string {
  const { width, height, fontSize: f, footerHeight: fh } = scene;
  const parts: string[] = [];
  const taken: Rect[] = [];
  const stroke = Math.max(2, f / 7);
  // Boxes first (their tags claim space before the word labels).
  const tagSize = f * 0.9;
  for (const b of scene.boxes) {
    const [x0, y0, x1, y1] = b.box;
    const r = `x="${n1(x0)}" y="${n1(y0)}" width="${n1(Math.max(0, x1 - x0))}" height="${n1(Math.max(0, y1 - y0))}" fill="none"`;
    parts.push(`<rect ${r} stroke="#000" stroke-opacity="0.55" stroke-width="${n1(stroke + 2)}"/>`);
    parts.push(`<rect ${r} stroke="${b.colour}" stroke-width="${n1(stroke)}"/>`);
    if (b.label) {
      const w = textWidth(b.label, tagSize) + tagSize * 0.7;
      const h = tagSize * 1.35;
      const { x: tx, y: ty } = placeTag(b.box, w, h, stroke, taken, width, height);
      const ink = luminance(b.colour) > 0.6 ? '#000' : '#fff';
      parts.push(`<rect x="${n1(tx)}" y="${n1(ty)}" width="${n1(w)}" height="${n1(h)}" rx="${n1(h / 4)}" fill="${b.colour}" fill-opacity="0.92"/>`);
      parts.push(`<text x="${n1(tx + tagSize * 0.35)}" y="${n1(ty + h * 0.74)}" font-size="${n1(tagSize)}" fill="${ink}">${escapeXml(b.label)}</text>`);
    }
  }
  // The trace and the word labels.
  const points = scene.words.map((w) => w.point);
  parts.push(...traceSvg(points, f));
  const labelH = f * 1.2;
  for (const g of groupWords(scene.words, f * 1.5)) {
    const w = textWidth(g.text, f);
    const r = placeLabel(g.point, w, labelH, taken, width, height, f * 0.45);
    const cx = r.x + r.w / 2;
    const cy = r.y + r.h / 2;
    if (Math.hypot(cx - g.point[0], cy - g.point[1]) > Math.max(r.w, r.h) / 2 + f) {
      const ex = Math.min(Math.max(g.point[0], r.x), r.x + r.w);
      const ey = Math.min(Math.max(g.point[1], r.y), r.y + r.h);
      parts.push(`<line x1="${n1(g.point[0])}" y1="${n1(g.point[1])}" x2="${n1(ex)}" y2="${n1(ey)}" stroke="#fff" stroke-opacity="0.7" stroke-width="1"/>`);
    }
    parts.push(haloText(r.x, r.y + r.h * 0.8, g.text, f));
  }
  if (scene.footer && fh > 0) {
    const lines = wrapText(scene.footer, width - 2 * f, f);
    lines.forEach((line, i) => {
      parts.push(`<text x="${n1(f)}" y="${n1(height + f * 0.6 + (i + 1) * f * 1.4 - f * 0.35)}" font-size="${n1(f)}" font-weight="normal" fill="#f2f2f2">${escapeXml(line)}</text>`);
    });
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + fh}" font-family="${FONT}" font-weight="bold">${parts.join('')}</svg>`;
}
