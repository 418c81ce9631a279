/**
 * Binary masks and COCO run-length encoding, compatible with pycocotools (cocodataset/cocoapi maskApi.c):
 * counts run over the mask in COLUMN-major order (down each column, then the next column), alternating
 * 0-runs and 1-runs and starting with a 0-run (possibly of length 0); `size` is [height, width]. The compressed
 * string form stores each count (from the 4th on, as the difference to the count two before) in 5-bit groups,
 * least significant first, with a continuation bit (0x20) and the sign in bit 0x10 of the last group, offset
 * by 48 to printable ASCII.
 */
import sharp from 'sharp';
import { InvalidArgumentError } from './errors';

/** A COCO RLE object as found in COCO JSON files: uncompressed (number[]) or compressed (string) counts. */
export interface RLE {
  size: [height: number, width: number];
  counts: number[] | string;
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new InvalidArgumentError(`mask size must be non-negative integers, got ${width}x${height}`);
  }
}

/** Run-length counts (uncompressed COCO form) of a row-major 0/1 mask (any non-zero byte counts as 1). */
export function encodeCounts(data: ArrayLike<number>, width: number, height: number): number[] {
  checkSize(width, height);
  if (data.length !== width * height) throw new InvalidArgumentError(`mask has ${data.length} values, expected ${width * height}`);
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = data[y * width + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** A row-major 0/1 mask from uncompressed counts. */
export function decodeCounts(counts: ArrayLike<number>, width: number, height: number): Uint8Array {
  checkSize(width, height);
  const n = width * height;
  const out = new Uint8Array(n);
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (!Number.isInteger(c) || c < 0) throw new InvalidArgumentError(`RLE count ${i} is ${c}, expected a non-negative integer`);
    if (pos + c > n) throw new InvalidArgumentError(`RLE counts cover more than ${width}x${height} pixels`);
    if (i % 2 === 1) {
      for (let k = pos; k < pos + c; k++) {
        const x = Math.floor(k / height);
        out[(k - x * height) * width + x] = 1;
      }
    }
    pos += c;
  }
  if (pos !== n) throw new InvalidArgumentError(`RLE counts cover ${pos} pixels, expected ${n} (${width}x${height})`);
  return out;
}

/** Compressed COCO string of uncompressed counts (pycocotools rleToString). */
export function countsToString(counts: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x = Math.floor(x / 32); // arithmetic shift, exact beyond 32 bits
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** Uncompressed counts of a compressed COCO string (pycocotools rleFrString). */
export function stringToCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new InvalidArgumentError('truncated RLE string');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new InvalidArgumentError(`bad character in RLE string at ${p}`);
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x -= 2 ** (5 * k); // sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** A binary mask at image resolution (row-major, one byte per pixel, 0 or 1). */
export class Mask {
  readonly width: number;
  readonly height: number;
  private readonly bits: Uint8Array;

  /** `data`: width*height bytes, non-zero = inside. Binarised into a new buffer unless already 0/1 (kept). */
  constructor(data: Uint8Array, width: number, height: number) {
    checkSize(width, height);
    if (!(data instanceof Uint8Array) || data.length !== width * height) {
      throw new InvalidArgumentError(`mask data must be a Uint8Array of width*height = ${width * height} bytes`);
    }
    this.width = width;
    this.height = height;
    this.bits = data.every((v) => v <= 1) ? data : Uint8Array.from(data, (v) => (v ? 1 : 0));
  }

  /** Decodes a COCO RLE object (compressed or uncompressed counts). */
  static fromRLE(rle: RLE): Mask {
    if (!rle || !Array.isArray(rle.size) || rle.size.length !== 2) throw new InvalidArgumentError('RLE needs size: [height, width]');
    const [height, width] = rle.size;
    const counts = typeof rle.counts === 'string' ? stringToCounts(rle.counts) : rle.counts;
    if (!Array.isArray(counts)) throw new InvalidArgumentError('RLE counts must be a string or an array of numbers');
    return new Mask(decodeCounts(counts, width, height), width, height);
  }

  /** COCO RLE with compressed string counts (the form pycocotools.mask.encode returns, as str). */
  get rle(): RLE {
    return this.toRLE();
  }

  toRLE({ compressed = true }: { compressed?: boolean } = {}): RLE {
    const counts = encodeCounts(this.bits, this.width, this.height);
    return { size: [this.height, this.width], counts: compressed ? countsToString(counts) : counts };
  }

  /** The mask bytes (0/1, row-major); the returned array is the mask's own storage. */
  toBitmap(): Uint8Array {
    return this.bits;
  }

  /** Number of pixels inside. */
  area(): number {
    let a = 0;
    for (let i = 0; i < this.bits.length; i++) a += this.bits[i];
    return a;
  }

  /** Tight bounding box [x0, y0, x1, y1] (exclusive x1, y1) or null when empty. */
  bounds(): [number, number, number, number] | null {
    let x0 = this.width, y0 = this.height, x1 = -1, y1 = -1;
    for (let y = 0; y < this.height; y++) {
      for (let x = 0; x < this.width; x++) {
        if (this.bits[y * this.width + x]) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
  }

  /** An 8-bit grayscale PNG: 255 inside, 0 outside. */
  async toPNG(): Promise<Buffer> {
    const gray = Buffer.alloc(this.bits.length);
    for (let i = 0; i < gray.length; i++) gray[i] = this.bits[i] ? 255 : 0;
    return sharp(gray, { raw: { width: this.width, height: this.height, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
  }
}
