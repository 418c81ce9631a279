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
  colour: string;
  size?: string;
  /** Indices (into the words) of the mention's words: [size,] colour, shape. */
  words: number[];
}

/**
 * Object mentions, as the reference evaluation (pixelllm_ref/evaluate.py mention_hits) finds them: a shape word
 * right after a colour word, with the size word right before the colour when there is one ("[size] colour shape").
 */
export function findMentions(words: Word[], vocab: Vocabulary): Mention[] {
  const out: Mention[] = [];
  words.forEach(({ word }, i) => {
    if (!vocab.shapes.includes(word) || i === 0 || !vocab.colours.includes(words[i - 1].word)) return;
    const size = i >= 2 && vocab.sizes.includes(words[i - 2].word) ? words[i - 2].word : undefined;
    out.push({ shape: word, colour: words[i - 1].word, size, words: size === undefined ? [i - 1, i] : [i - 2, i - 1, i] });
  });
  return out;
}

export interface SceneObjectRef {
  shape: string;
  colour: string;
  size: string;
  /** The region a point must fall in: the object's full (unoccluded) mask with ring holes filled, image size. */
  silhouette: () => Uint8Array;
}

export interface PointInObjectCounts {
  /** Scored words: every word of every mention. */
  words: number;
  /** Scored words whose point is inside the silhouette of an object the mention names. */
  hits: number;
  mentions: number;
  /** Mentions that name no object in the scene (all their words are misses). */
  unmatched: number;
  /** Scene objects that at least one mention names (size, colour, shape): the narrative's coverage. */
  named: number;
}

/** pointInObject counts for one caption of one scene (see docs/cli.md). */
export function pointInObjectCounts(words: Word[], objects: SceneObjectRef[], vocab: Vocabulary, width: number, height: number): PointInObjectCounts {
  const counts: PointInObjectCounts = { words: 0, hits: 0, mentions: 0, unmatched: 0, named: 0 };
  const namedObjects = new Set<SceneObjectRef>();
  for (const m of findMentions(words, vocab)) {
    counts.mentions++;
    const named = objects.filter((o) => o.shape === m.shape && o.colour === m.colour && (m.size === undefined || o.size === m.size));
    if (named.length === 0) counts.unmatched++;
    for (const o of named) namedObjects.add(o);
    for (const wi of m.words) {
      counts.words++;
      if (named.some((o) => pointInMask(words[wi].point, o.silhouette(), width, height))) counts.hits++;
    }
  }
  counts.named = namedObjects.size;
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
 * All-point interpolated AP (PASCAL VOC 2010+, as pixelllm_ref/evaluate.py average_precision) of score-ranked
 * true-positive flags over `numGt` ground truths: the area under the precision envelope. Null without ground truth.
 */
export function averagePrecision(tp: boolean[], numGt: number): number | null {
  if (numGt === 0) return null;
  const mrec = [0];
  const mpre = [0];
  let t = 0;
  tp.forEach((hit, i) => {
    if (hit) t++;
    mrec.push(t / numGt);
    mpre.push(t / (i + 1));
  });
  mrec.push(1);
  mpre.push(0);
  for (let i = mpre.length - 2; i >= 0; i--) mpre[i] = Math.max(mpre[i], mpre[i + 1]);
  let ap = 0;
  for (let i = 0; i + 1 < mrec.length; i++) if (mrec[i + 1] !== mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
  return ap;
}

export function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}
