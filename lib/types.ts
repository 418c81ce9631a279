/** Public types of the pixelllm API. Coordinates are pixels of the ORIGINAL image, x right, y down. */
import type { Sharp } from 'sharp';
import type { Mask } from './masks';

/** The values LoadOptions accepts (the addon checks the same lists). */
export const BACKENDS = ['auto', 'cpu', 'tensorrt'] as const;
export const PRECISIONS = ['fp32', 'bf16'] as const;
export const MASK_RESIZES = ['sam', 'evaluator'] as const;

export type Backend = (typeof BACKENDS)[number];

export interface LoadOptions {
  /** 'auto' (default): TensorRT when engines for this GPU exist, else CPU. */
  backend?: Backend;
  /** Worker threads for the CPU backend; 0 (default) = all cores. */
  threads?: number;
  /**
   * CPU backend: how the text decoder's weights are held. 'fp32' (default) as stored; 'bf16' rounds each weight to
   * bfloat16 at load (half the memory and half the bytes each decode step reads; the arithmetic stays float32), for
   * faster tokens at a small numeric cost (see README, "Performance"). The TensorRT backend ignores it.
   */
  decoderWeights?: DecoderWeights;
  /**
   * CPU backend: the image encoders' arithmetic. 'fp32' (default); 'bf16' rounds weights and activations of every
   * encoder matrix product to bfloat16 and multiplies them with AVX512-BF16 dot products (float32 accumulation):
   * about twice the encoder speed, features within ~0.5 % (rel L2) of float32. Needs a CPU with AVX512-BF16, else
   * the load fails with BackendUnavailableError. The TensorRT backend ignores it.
   */
  encoderPrecision?: EncoderPrecision;
  /**
   * How the mask decoder's low-res logits (4x the SAM grid) become a mask at the original image size.
   * 'sam' (default): segment-anything's postprocess_masks, the geometry the model is trained with: resize to the
   * padded model input, keep the image's part, resize to the original size. 'evaluator': the official PixelLLM
   * evaluator's (crop the low-res logits to the image's part rounded down to whole cells, resize to the original
   * size), for reproducing its published numbers; where the image's part is not a whole number of cells it shifts
   * masks toward the bottom right by up to one cell (4 input pixels). Both are bilinear, threshold 0.
   */
  maskResize?: MaskResize;
}

export type MaskResize = (typeof MASK_RESIZES)[number];
export type DecoderWeights = (typeof PRECISIONS)[number];
export type EncoderPrecision = (typeof PRECISIONS)[number];

/** [x0, y0, x1, y1] in pixels. */
export type Box = [x0: number, y0: number, x1: number, y1: number];
/** [x, y] in pixels. */
export type Point = [x: number, y: number];

/** Raw pixels: 8-bit (Buffer/Uint8Array) or 16-bit (Uint16Array) interleaved, 1-4 channels. */
export interface RawImage {
  data: Buffer | Uint8Array | Uint8ClampedArray | Uint16Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** A file path, encoded bytes (JPEG/PNG/WebP/TIFF/...), a sharp instance, or raw pixels. */
export type ImageInput = string | Buffer | Uint8Array | Sharp | RawImage;

export interface ImageOptions {
  /** Refuse images with more pixels than this (LIMIT_EXCEEDED). Default 64 megapixels. */
  maxPixels?: number;
  /** Background that transparent pixels are flattened onto, 0..255 RGB. Default white. */
  background?: [r: number, g: number, b: number];
}

/** One generated word piece with its location. */
export interface TokenEvent {
  /** 0-based position in the generated sequence. */
  index: number;
  /** Token id. */
  token: number;
  /** The text this token adds to the decoded string ('' for special tokens). */
  text: string;
  /** The token's point: centre of `box`. */
  point: Point;
  /** The two corners the point head predicts for this token. */
  box: Box;
  /** Log-probability of the token. */
  logprob: number;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  /** Maximum tokens to generate; default = the model's max_caption_length. */
  maxTokens?: number;
  /** 1 (default) = greedy, the official decode rules; > 1 = beam search. */
  beams?: number;
  /**
   * A task prompt the caption continues from (e.g. the official 'a long image caption:'). Default: the model's
   * prompt for the task (config.json `task_prompts`, the context it was trained with), if any; `null` = none.
   */
  prompt?: string | null;
}

export interface CaptionResult {
  text: string;
  tokens: number[];
  events: TokenEvent[];
  /** Mean log-probability (the official score). */
  score: number;
  /** A box predicted for the whole caption, when the model gives one. */
  box?: Box;
}

/** What caption() and describe() return: iterate for events as they are generated, or await `.result`. */
export interface Generation extends AsyncIterable<TokenEvent> {
  readonly result: Promise<CaptionResult>;
  /** Stops generating; the iterator ends and `.result` rejects with an AbortedError. */
  cancel(): void;
}

export interface ReferOptions {
  signal?: AbortSignal;
  /** Also decode a SAM mask for the box. */
  mask?: boolean;
}

export interface ReferResult {
  box: Box;
  score: number;
  /** The expression's tokens (teacher-forced) and their per-token locations. */
  tokens: number[];
  events: TokenEvent[];
  mask?: Mask;
  /** The mask decoder's IoU prediction (with `mask`). */
  maskScore?: number;
}

export interface SegmentResult {
  mask: Mask;
  /** The mask decoder's IoU prediction. */
  score: number;
  box: Box;
}

export interface DenseOptions {
  signal?: AbortSignal;
  maxBoxes?: number;
  scoreThreshold?: number;
  nmsIou?: number;
  maxTokens?: number;
  /** A task prompt every box's caption continues from (the official dense captioning prompt is 'an object of').
   * Default: the model's config.json `task_prompts.dense`, if any; `null` = none. */
  prompt?: string | null;
}

export interface DenseCaption {
  box: Box;
  /** Proposal score. */
  score: number;
  text: string;
  tokens: number[];
  captionScore: number;
}

export interface ModelInfo {
  dir: string;
  textDecoder: 'git_decoder' | 't5';
  imageSize: number;
  vocabSize: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  maxCaptionLength: number;
  hasProposalHead: boolean;
  hasMaskDecoder: boolean;
  backend: 'cpu' | 'tensorrt';
  threads: number;
  /** CPU backend only: the decoder weights' format in use. */
  decoderWeights?: DecoderWeights;
  /** CPU backend only: the image encoders' arithmetic in use. */
  encoderPrecision?: EncoderPrecision;
  /** The mask post-processing in use (LoadOptions.maskResize). */
  maskResize: MaskResize;
}
