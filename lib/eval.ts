/**
 * `pixelllm eval`: accuracy of a model on freshly generated synthetic scenes, run through the NATIVE runtime
 * (the public PixelLLM API). The scenes come from the PyTorch reference (engines/reference/pixelllm_ref/
 * eval_scenes.py, run with the reference venv's Python into a temporary folder); the metric definitions are in
 * lib/eval-metrics.ts and docs/cli.md. Needs a repository checkout (the reference is not in the npm package).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackendUnavailableError, InternalError, InvalidArgumentError } from './errors';
import {
  averagePrecision,
  boxIoU,
  captionWords,
  maskIoU,
  matchDetections,
  mean,
  pointInObjectCounts,
  type Detection,
  type GroundTruth,
  type SceneObjectRef,
  type Vocabulary,
} from './eval-metrics';
import { Mask } from './masks';
import type { RLE } from './masks';
import { PixelLLM } from './model';
import { packageRoot } from './native';
import type { Box, DecoderWeights, EncoderPrecision, LoadOptions, MaskResize } from './types';

/** The scene generator is missing (no reference venv, or not a repository checkout). */
export class EvalSetupError extends BackendUnavailableError {
  override name = 'EvalSetupError';
}

/** LoadOptions (backend, threads, decoderWeights, encoderPrecision, maskResize) apply when `model` is a directory. */
export interface EvalOptions extends LoadOptions {
  seed: number;
  count: number;
  /** A model directory (default: the demo model) or a loaded model (not disposed here). */
  model?: string | PixelLLM;
  /** Python with the reference's dependencies; default $PIXELLLM_PYTHON or engines/reference/.venv/bin/python. */
  python?: string;
  /** Keep the generated scenes in this folder instead of a temporary one. */
  scenesDir?: string;
  /** Called after each scene. */
  onScene?: (done: number, total: number) => void;
}

export interface EvalResult {
  seed: number;
  count: number;
  model: string;
  backend: string;
  /** CPU backend: the text decoder's weight format and the image encoders' arithmetic ('fp32' | 'bf16'). */
  decoderWeights?: DecoderWeights;
  encoderPrecision?: EncoderPrecision;
  /** How masks were brought to the original size (LoadOptions.maskResize). */
  maskResize: MaskResize;
  objects: number;
  /** Share of objects whose referring box has IoU >= 0.5 with the ground truth. */
  referAcc50: number | null;
  /** Mean mask IoU of the referring masks (null without a mask decoder). */
  maskIoU: number | null;
  /** Share of scored caption words whose point lies inside the named object (see docs/cli.md). */
  pointInObject: number | null;
  /** Share of objects whose describe(box) text equals the scene's region caption. */
  regionCaptionExact: number | null;
  /** AP at IoU 0.5 with exact captions, all-point interpolated (null without a proposal head). */
  denseAP50: number | null;
  /** Caption tokens per second of caption generation (image already encoded). */
  tokensPerSecond: number | null;
  details: {
    referMeanIoU: number | null;
    pointWords: number;
    captionMentions: number;
    captionUnmatchedMentions: number;
    /** Objects that some caption mention names (size, colour, shape), of `objects`: the narratives' coverage. */
    captionObjectsNamed: number;
    captionTokens: number;
    denseDetections: number;
    denseTruePositives: number;
    encodeMsMean: number | null;
    seconds: number;
  };
}

interface SceneObjectJson {
  shape: string;
  colour: string;
  size: string;
  box: Box;
  mask_rle: RLE;
  /** The expression the reference evaluation asks for (eval_scenes.py). */
  eval_expression: string;
  /** Full mask, ring holes filled (eval_scenes.py). */
  silhouette_rle: RLE;
  caption: string;
}

interface SceneJson {
  seed: number;
  width: number;
  height: number;
  objects: SceneObjectJson[];
}

export interface SceneManifest {
  seed: number;
  count: number;
  prompts: { narrative: string; region: string; refer_prefix: string };
  vocabulary: Vocabulary;
  scenes: { seed: number; image: string; annotations: string }[];
}

export function referenceDir(): string {
  return path.join(packageRoot(), 'engines', 'reference');
}

const SETUP_HINT = 'set it up from a repository checkout with `bash engines/reference/setup_venv.sh` (or point PIXELLLM_PYTHON at a Python with numpy, pillow and pycocotools)';

/** The Python that runs the scene generator; EvalSetupError when there is none. */
export function referencePython(explicit?: string): string {
  if (!existsSync(path.join(referenceDir(), 'pixelllm_ref', 'eval_scenes.py'))) {
    throw new EvalSetupError(`eval needs the PyTorch reference (engines/reference/pixelllm_ref), which is not in ${packageRoot()}: run it from a repository checkout`);
  }
  const py = explicit ?? process.env.PIXELLLM_PYTHON ?? path.join(referenceDir(), '.venv', 'bin', 'python');
  if (!existsSync(py)) throw new EvalSetupError(`eval needs the reference Python venv, ${py} does not exist: ${SETUP_HINT}`);
  return py;
}

/** Runs eval_scenes.py: `count` scenes from `seed` into `outDir`; returns the manifest. */
export async function generateScenes(seed: number, count: number, outDir: string, python?: string): Promise<SceneManifest> {
  const py = referencePython(python);
  const args = ['-m', 'pixelllm_ref.eval_scenes', '--seed', String(seed), '--count', String(count), '--out', outDir];
  const stderr = await new Promise<string>((resolve, reject) => {
    const child = spawn(py, args, { cwd: referenceDir(), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new EvalSetupError(`cannot run ${py}: ${e.message}; ${SETUP_HINT}`, { cause: e })));
    child.on('close', (code) => (code === 0 ? resolve(err) : reject(new EvalSetupError(`the scene generator failed (exit ${code}): ${err.trim().split('\n').slice(-5).join('\n')}`))));
  });
  void stderr;
  return JSON.parse(await readFile(path.join(outDir, 'manifest.json'), 'utf8')) as SceneManifest;
}

function checkCount(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${v}`);
}

/** Generates the scenes and evaluates the model on them. */
export async function evaluate(options: EvalOptions): Promise<EvalResult> {
  checkCount('seed', options.seed, 0, 2 ** 31 - 1);
  checkCount('count', options.count, 1, 100_000);
  referencePython(options.python); // fail before loading the model
  const t0 = performance.now();
  const ownModel = !(options.model instanceof PixelLLM);
  const model = options.model instanceof PixelLLM ? options.model : await PixelLLM.load(options.model, options);
  const dir = options.scenesDir ?? (await mkdtemp(path.join(os.tmpdir(), 'pixelllm-eval-')));
  try {
    const manifest = await generateScenes(options.seed, options.count, dir, options.python);
    const result = await evaluateScenes(model, dir, manifest, options.onScene);
    result.details.seconds = (performance.now() - t0) / 1000;
    return result;
  } finally {
    if (!options.scenesDir) await rm(dir, { recursive: true, force: true });
    if (ownModel) model.dispose();
  }
}

/** Evaluates `model` on the scenes of `manifest` (in `dir`). */
export async function evaluateScenes(model: PixelLLM, dir: string, manifest: SceneManifest, onScene?: (done: number, total: number) => void): Promise<EvalResult> {
  const t0 = performance.now();
  const { info } = model;
  const referIoU: number[] = [];
  const masksIoU: number[] = [];
  const regionExact: boolean[] = [];
  const point = { words: 0, hits: 0, mentions: 0, unmatched: 0, named: 0 };
  const dets: Detection[] = [];
  const gts: GroundTruth[] = [];
  const encodeMs: number[] = [];
  let captionTokens = 0;
  let captionMs = 0;
  let objects = 0;
  for (const [si, entry] of manifest.scenes.entries()) {
    const scene = JSON.parse(await readFile(path.join(dir, entry.annotations), 'utf8')) as SceneJson;
    const te = performance.now();
    const image = await model.encode(path.join(dir, entry.image));
    encodeMs.push(performance.now() - te);
    if (image.width !== scene.width || image.height !== scene.height) {
      throw new InternalError(`scene ${entry.image} is ${image.width}x${image.height}, its annotations say ${scene.width}x${scene.height}`);
    }
    const masks = scene.objects.map((o) => Mask.fromRLE(o.mask_rle).toBitmap());
    // Caption (the narrative task) -> pointInObject, tokens per second.
    const tc = performance.now();
    const caption = await model.caption(image, { prompt: manifest.prompts.narrative }).result;
    captionMs += performance.now() - tc;
    captionTokens += caption.tokens.length;
    const refs: SceneObjectRef[] = scene.objects.map((o) => {
      let sil: Uint8Array | undefined;
      return { shape: o.shape, colour: o.colour, size: o.size, silhouette: () => (sil ??= Mask.fromRLE(o.silhouette_rle).toBitmap()) };
    });
    const c = pointInObjectCounts(captionWords(caption.events), refs, manifest.vocabulary, scene.width, scene.height);
    point.words += c.words;
    point.hits += c.hits;
    point.mentions += c.mentions;
    point.unmatched += c.unmatched;
    point.named += c.named;
    // Per object: referring box (+ mask), region caption.
    for (const [k, o] of scene.objects.entries()) {
      objects++;
      const ref = await model.refer(image, o.eval_expression, { mask: info.hasMaskDecoder });
      referIoU.push(boxIoU(ref.box, o.box));
      if (ref.mask) masksIoU.push(maskIoU(ref.mask.toBitmap(), masks[k]));
      const region = await model.describe(image, o.box, { prompt: manifest.prompts.region }).result;
      regionExact.push(region.text.trim() === o.caption);
      gts.push({ scene: si, box: o.box, caption: o.caption });
    }
    if (info.hasProposalHead) {
      // Ranking score as the reference (proposal_head.dense_caption): sqrt(proposal score * caption probability).
      for (const it of await model.denseCaption(image)) {
        dets.push({ scene: si, box: it.box, score: Math.sqrt(Math.max(0, it.score) * Math.exp(it.captionScore)), text: it.text });
      }
    }
    image.dispose();
    onScene?.(si + 1, manifest.scenes.length);
  }
  const { tp } = matchDetections(dets, gts, 0.5);
  return {
    seed: manifest.seed,
    count: manifest.count,
    model: info.dir,
    backend: info.backend,
    ...(info.decoderWeights ? { decoderWeights: info.decoderWeights } : {}),
    ...(info.encoderPrecision ? { encoderPrecision: info.encoderPrecision } : {}),
    maskResize: info.maskResize,
    objects,
    referAcc50: mean(referIoU.map((v) => (v >= 0.5 ? 1 : 0))),
    maskIoU: info.hasMaskDecoder ? mean(masksIoU) : null,
    pointInObject: point.words ? point.hits / point.words : null,
    regionCaptionExact: mean(regionExact.map((v) => (v ? 1 : 0))),
    denseAP50: info.hasProposalHead ? averagePrecision(tp, gts.length) : null,
    tokensPerSecond: captionMs > 0 ? captionTokens / (captionMs / 1000) : null,
    details: {
      referMeanIoU: mean(referIoU),
      pointWords: point.words,
      captionMentions: point.mentions,
      captionUnmatchedMentions: point.unmatched,
      captionObjectsNamed: point.named,
      captionTokens,
      denseDetections: dets.length,
      denseTruePositives: tp.filter(Boolean).length,
      encodeMsMean: mean(encodeMs),
      seconds: (performance.now() - t0) / 1000,
    },
  };
}

/** The human summary of an eval result (one metric per line). */
export function formatEval(r: EvalResult): string {
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(100 * v).toFixed(1)}%`);
  const rows: [string, string][] = [
    ['referAcc50', pct(r.referAcc50)],
    ['maskIoU', r.maskIoU === null ? 'n/a' : `${r.maskIoU.toFixed(3)}  (masks resized the '${r.maskResize}' way)`],
    ['pointInObject', `${pct(r.pointInObject)}  (${r.details.pointWords} words, ${r.details.captionUnmatchedMentions}/${r.details.captionMentions} mentions match no object; captions name ${r.details.captionObjectsNamed}/${r.objects} objects)`],
    ['regionCaptionExact', pct(r.regionCaptionExact)],
    ['denseAP50', r.denseAP50 === null ? 'n/a' : r.denseAP50.toFixed(3) + `  (${r.details.denseTruePositives}/${r.details.denseDetections} detections correct)`],
    ['tokensPerSecond', r.tokensPerSecond === null ? 'n/a' : r.tokensPerSecond.toFixed(1)],
  ];
  const head = `eval: ${r.count} scenes (seed ${r.seed}), ${r.objects} objects, ${r.model} on ${r.backend}, ${r.details.seconds.toFixed(1)} s`;
  return [head, ...rows.map(([k, v]) => `  ${k.padEnd(20)}${v}`)].join('\n');
}
