/**
 * The accuracy metrics of `pixelllm eval` as pure functions (no model, no I/O); the definitions are spelled
 * out in docs/cli.md ("eval: what the numbers mean"). Boxes are [x0, y0, x1, y1] pixels with exclusive x1/y1,
 * masks are row-major 0/1 bytes of the image size.
 */
import type { Box, Point } from './types';

/** Intersection over union of two boxes (0 when either is empty). */
export function boxIoU(a: Box, b: Box): number {
  const iw = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  const inter = iw > 0 && ih > 0 ? iw * ih : 0;
  const area = (r: Box) => Math.max(0, r[2] - r[0]) * Math.max(0, r[3] - r[1]);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** IoU of two equally sized binary masks; 1 when both are empty. */
export function maskIoU(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`mask sizes differ: ${a.length} vs ${b.length}`);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ? 1 : 0;
    const y = b[i] ? 1 : 0;
    inter += x & y;
    union += x | y;
  }
  return union === 0 ? 1 : inter / union;
}

/** The mask with its enclosed holes filled: outside pixels not 4-connected to the image border become inside. */
export function fillHoles(bits: Uint8Array, width: number, height: number): Uint8Array {
  const reached = new Uint8Array(bits.length);
  const stack: number[] = [];
  const seed = (i: number) => {
    if (!bits[i] && !reached[i]) {
      reached[i] = 1;
      stack.push(i);
    }
  };
  for (let x = 0; x < width; x++) {
    seed(x);
    seed((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    seed(y * width);
    seed(y * width + width - 1);
  }
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % width;
    if (x > 0) seed(i - 1);
    if (x < width - 1) seed(i + 1);
    if (i >= width) seed(i - width);
    if (i < (height - 1) * width) seed(i + width);
  }
  const out = new Uint8Array(bits.length);
  for (let i = 0; i < out.length; i++) out[i] = bits[i] || !reached[i] ? 1 : 0;
  return out;
}

/** Is the point inside the mask? The pixel (floor x, floor y), clamped to the image. */
export function pointInMask(p: Point, bits: Uint8Array, width: number, height: number): boolean {
  const x = Math.min(width - 1, Math.max(0, Math.floor(p[0])));
  const y = Math.min(height - 1, Math.max(0, Math.floor(p[1])));
  return bits[y * width + x] === 1;
}

// ---- pointInObject ----------------------------------------------------------------------------------------------

export interface Word {
  word: string;
  point: Point;
}

/**
 * Generated tokens -> words: a token whose text starts with whitespace (or the first token with text) starts a
 * word; the word is its tokens' text, lower-cased, with surrounding punctuation removed; its point is the point
 * of its first token. Words left empty (punctuation only) are dropped.
 */
export function captionWords(events: { text: string; point: Point }[]): Word[] {
  const raw: { text: string; point: Point }[] = [];
  for (const e of events) {
    if (e.text === '') continue;
    if (raw.length === 0 || /^\s/.test(e.text)) raw.push({ text: e.text.trim(), point: e.point });
    else raw[raw.length - 1].text += e.text;
  }
  return raw
    .map((w) => ({ word: w.text.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ''), point: w.point }))
    .filter((w) => w.word !== '');
}

export interface Vocabulary {
  shapes: string[];
  colours: string[];
  sizes: string[];
}

export interface Mention {
  shape: string;
  colour?: string;
  size?: string;
  /** Index (into the words) of the shape word, and of the colour word when there is one. */
  shapeWord: number;
  colourWord?: number;
}

/**
 * Object mentions in a word sequence: size and colour words are collected; a shape word closes a mention with
 * the last size and the last colour collected since the previous mention; any other word clears them.
 */
export function findMentions(words: Word[], vocab: Vocabulary): Mention[] {
  const out: Mention[] = [];
  let size: string | undefined;
  let colour: number | undefined;
  words.forEach(({ word }, i) => {
    if (vocab.sizes.includes(word)) size = word;
    else if (vocab.colours.includes(word)) colour = i;
    else if (vocab.shapes.includes(word)) {
      out.push({ shape: word, size, colour: colour === undefined ? undefined : words[colour].word, shapeWord: i, colourWord: colour });
      size = undefined;
      colour = undefined;
    } else {
      size = undefined;
      colour = undefined;
    }
  });
  return out;
}

export interface SceneObjectRef {
  shape: string;
  colour: string;
  size: string;
  /** The object's silhouette (visible mask, holes filled), image size. */
  silhouette: () => Uint8Array;
}

export interface PointInObjectCounts {
  /** Scored words (colour and shape words of mentions that match an object). */
  words: number;
  /** Scored words whose point is inside a matching object's silhouette. */
  hits: number;
  mentions: number;
  /** Mentions that match no object in the scene (their words are not scored). */
  unmatched: number;
}

/** pointInObject counts for one caption of one scene (see docs/cli.md). */
export function pointInObjectCounts(words: Word[], objects: SceneObjectRef[], vocab: Vocabulary, width: number, height: number): PointInObjectCounts {
  const counts: PointInObjectCounts = { words: 0, hits: 0, mentions: 0, unmatched: 0 };
  for (const m of findMentions(words, vocab)) {
    counts.mentions++;
    const cands = objects.filter((o) => o.shape === m.shape && (m.colour === undefined || o.colour === m.colour) && (m.size === undefined || o.size === m.size));
    if (cands.length === 0) {
      counts.unmatched++;
      continue;
    }
    for (const wi of [m.colourWord, m.shapeWord]) {
      if (wi === undefined) continue;
      counts.words++;
      if (cands.some((o) => pointInMask(words[wi].point, o.silhouette(), width, height))) counts.hits++;
    }
  }
  return counts;
}

// ---- dense AP -------------------------------------------------------------------------------------------------

export interface Detection {
  scene: number;
  box: Box;
  score: number;
  text: string;
}

export interface GroundTruth {
  scene: number;
  box: Box;
  caption: string;
}

/**
 * Marks each detection true/false positive. Detections are taken by descending score (stable: ties keep their
 * order); a detection is a true positive when its scene has a not yet matched ground-truth object with IoU >= `iou`
 * and exactly the same caption; it takes the one with the highest IoU.
 */
export function matchDetections(dets: Detection[], gts: GroundTruth[], iou = 0.5): { order: number[]; tp: boolean[] } {
  const order = dets.map((_, i) => i).sort((a, b) => dets[b].score - dets[a].score || a - b);
  const used = new Uint8Array(gts.length);
  const tp = order.map((di) => {
    const d = dets[di];
    let best = -1;
    let bestIoU = iou;
    gts.forEach((g, gi) => {
      if (used[gi] || g.scene !== d.scene || g.caption !== d.text.trim()) return;
      const v = boxIoU(d.box, g.box);
      if (v >= bestIoU) {
        bestIoU = v;
        best = gi;
      }
    });
    if (best >= 0) used[best] = 1;
    return best >= 0;
  });
  return { order, tp };
}

/**
 * COCO-style AP at one IoU threshold: precision made monotone (non-increasing in recall), sampled at the 101
 * recall points 0, 0.01, ..., 1 (0 where the recall is never reached), averaged (pycocotools COCOeval.accumulate).
 * Returns null when there is no ground truth.
 */
export function averagePrecision(tp: boolean[], numGt: number): number | null {
  if (numGt === 0) return null;
  const recall: number[] = [];
  const precision: number[] = [];
  let t = 0;
  tp.forEach((hit, i) => {
    if (hit) t++;
    recall.push(t / numGt);
    precision.push(t / (i + 1));
  });
  for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i], precision[i + 1]);
  let sum = 0;
  for (let k = 0; k <= 100; k++) {
    const r = k * 0.01; // numpy.linspace(0, 1, 101), as pycocotools
    let lo = 0;
    let hi = recall.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (recall[mid] < r) lo = mid + 1;
      else hi = mid;
    }
    if (lo < precision.length) sum += precision[lo];
  }
  return sum / 101;
}

export function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}
