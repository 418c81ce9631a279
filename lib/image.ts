/**
 * Image input -> the RGB8 pixels the native pipeline takes (original size, row-major, tightly packed).
 * Decoding uses sharp (libvips): EXIF orientation is applied, alpha is flattened onto a background, grayscale,
 * CMYK, palette and 16-bit images become 8-bit sRGB RGB. Raw RGB8 input is handed over without a copy.
 * The official pipeline decodes with tf.io.decode_image(channels=3); resizing/padding happens natively.
 */
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { InvalidArgumentError, InvalidImageError, LimitExceededError, PixelLLMError } from './errors';
import type { ImageInput, ImageOptions, RawImage } from './types';

export const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024;

/** Decoded pixels: `data.length === width * height * 3`. */
export interface RgbImage {
  data: Buffer;
  width: number;
  height: number;
}

function isSharp(value: unknown): value is Sharp {
  if (value instanceof sharp) return true;
  const v = value as Partial<Sharp> | null;
  return typeof v === 'object' && v !== null && typeof v.toBuffer === 'function' && typeof v.clone === 'function';
}

function isRaw(value: unknown): value is RawImage {
  const v = value as Partial<RawImage> | null;
  return typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && 'data' in v && 'width' in v && 'height' in v;
}

function checkDims(width: unknown, height: unknown, maxPixels: number): asserts width is number {
  if (!Number.isInteger(width) || !Number.isInteger(height) || (width as number) < 1 || (height as number) < 1) {
    throw new InvalidImageError(`image width and height must be positive integers, got ${String(width)}x${String(height)}`);
  }
  if ((width as number) * (height as number) > maxPixels) {
    throw new LimitExceededError(`image is ${String(width)}x${String(height)} pixels, more than the limit of ${maxPixels}`);
  }
}

function options(opts: ImageOptions | undefined): Required<ImageOptions> {
  const maxPixels = opts?.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isInteger(maxPixels) || maxPixels < 1) throw new InvalidArgumentError('maxPixels must be a positive integer');
  const background = opts?.background ?? [255, 255, 255];
  if (!Array.isArray(background) || background.length !== 3 || background.some((c) => !Number.isFinite(c) || c < 0 || c > 255)) {
    throw new InvalidArgumentError('background must be [r, g, b] with values in 0..255');
  }
  return { maxPixels, background };
}

/** Maps sharp/libvips failures to typed errors. */
function decodeError(err: unknown, what: string): PixelLLMError {
  if (err instanceof PixelLLMError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(message)) return new LimitExceededError(`${what}: ${message}`, { cause: err });
  return new InvalidImageError(`${what}: ${message}`, { cause: err });
}

function fromRaw(raw: RawImage, maxPixels: number): { pipeline?: Sharp; direct?: RgbImage } {
  const { data, width, height, channels } = raw;
  checkDims(width, height, maxPixels);
  if (![1, 2, 3, 4].includes(channels)) throw new InvalidImageError(`raw image channels must be 1..4, got ${String(channels)}`);
  const sixteen = data instanceof Uint16Array;
  if (!sixteen && !(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw new InvalidImageError('raw image data must be a Buffer, Uint8Array, Uint8ClampedArray or Uint16Array');
  }
  const expected = width * (height as number) * channels;
  if (data.length !== expected) {
    throw new InvalidImageError(`raw image data has ${data.length} values, expected width*height*channels = ${expected}`);
  }
  if (!sixteen && channels === 3) {
    // Zero-copy: a Buffer view on the caller's memory.
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return { direct: { data: buf, width, height: height as number } };
  }
  // A Uint16Array is read as 16-bit samples (sharp infers the depth from the typed array).
  return { pipeline: sharp(data, { raw: { width, height: height as number, channels }, limitInputPixels: maxPixels }) };
}

/**
 * Decodes `input` to RGB8 at its original size (after EXIF orientation).
 * Throws InvalidImageError (unreadable, corrupt, unsupported), LimitExceededError (too many pixels),
 * InvalidArgumentError (not an image input at all).
 */
export async function loadImage(input: ImageInput, opts?: ImageOptions): Promise<RgbImage> {
  const { maxPixels, background } = options(opts);
  let pipeline: Sharp;
  let what: string;
  if (typeof input === 'string') {
    what = `cannot read image ${input}`;
    pipeline = sharp(input, { limitInputPixels: maxPixels, failOn: 'error' });
  } else if (Buffer.isBuffer(input) || input instanceof Uint8Array) {
    if (input.length === 0) throw new InvalidImageError('image buffer is empty');
    what = 'cannot decode image bytes';
    pipeline = sharp(input, { limitInputPixels: maxPixels, failOn: 'error' });
  } else if (isSharp(input)) {
    what = 'cannot decode the sharp input';
    pipeline = input.clone();
  } else if (isRaw(input)) {
    what = 'cannot convert raw image';
    const raw = fromRaw(input, maxPixels);
    if (raw.direct) return raw.direct;
    pipeline = raw.pipeline!;
  } else {
    throw new InvalidArgumentError('image must be a path, a Buffer/Uint8Array of encoded bytes, a sharp instance or {data, width, height, channels}');
  }
  try {
    const { data, info } = await pipeline
      .autoOrient() // EXIF orientation
      .flatten({ background: { r: background[0], g: background[1], b: background[2] } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new InvalidImageError(`decoder returned ${info.channels} channels, expected 3`);
    checkDims(info.width, info.height, maxPixels);
    if (data.length !== info.width * info.height * 3) throw new InvalidImageError('decoder returned a short buffer');
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw decodeError(err, what);
  }
}
