/**
 * Loads the native addon (build/Release/pixelllm.node, made by `npm install` / cmake-js or node-gyp) and
 * describes the JS <-> native contract (native/addon/*.h). Set PIXELLLM_NATIVE to load another .node file.
 */
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import { BackendUnavailableError } from './errors';

/** Must equal kContractVersion in native/addon/addon.h. */
export const CONTRACT_VERSION = 1;

export type NativeBox = [number, number, number, number];

export interface NativeTokenEvent {
  index: number;
  token: number;
  x: number;
  y: number;
  box: NativeBox;
  logprob: number;
}

export interface NativeMask {
  width: number;
  height: number;
  /** width*height bytes, 0/1, row-major. */
  data: Buffer;
  iou: number;
  box: NativeBox;
}

export interface NativeGenerateRequest {
  task: 'caption' | 'refer' | 'describe';
  box?: NativeBox;
  contextTokens?: Int32Array;
  textTokens?: Int32Array;
  maxTokens?: number;
  beams?: number;
  withMask?: boolean;
}

export interface NativeGenerateResult {
  tokens: Int32Array;
  events: NativeTokenEvent[];
  score: number;
  box?: NativeBox;
  mask?: NativeMask;
}

export interface NativeDenseOptions {
  maxBoxes?: number;
  scoreThreshold?: number;
  nmsIou?: number;
  maxTokens?: number;
  contextTokens?: Int32Array;
}

export interface NativeDenseItem {
  box: NativeBox;
  score: number;
  tokens: Int32Array;
  captionScore: number;
}

export interface NativeModelInfo {
  dir: string;
  textDecoder: string;
  imageSize: number;
  vocabSize: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  maxCaptionLength: number;
  hasProposalHead: boolean;
  hasMaskDecoder: boolean;
  backend: string;
  threads: number;
}

export interface NativeFeatures {
  readonly width: number;
  readonly height: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeModel {
  info(): NativeModelInfo;
  encode(rgb: Uint8Array, width: number, height: number): Promise<NativeFeatures>;
  generate(
    features: NativeFeatures,
    request: NativeGenerateRequest,
    onToken?: ((event: NativeTokenEvent) => void) | null,
    cancel?: NativeCancelToken | null,
  ): Promise<NativeGenerateResult>;
  segment(features: NativeFeatures, box: NativeBox, cancel?: NativeCancelToken | null): Promise<NativeMask>;
  dense(features: NativeFeatures, options?: NativeDenseOptions, cancel?: NativeCancelToken | null): Promise<NativeDenseItem[]>;
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeBinding {
  contractVersion: number;
  napiVersion: number;
  errorCodes: string[];
  Model: { load(dir: string, options: { backend: string; threads: number; decoderWeights?: string; encoderPrecision?: string; maskResize?: string }): Promise<NativeModel> };
  CancelToken: new () => NativeCancelToken;
}

/** The package root (the folder holding package.json), from lib/ or dist/lib/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new BackendUnavailableError(`cannot find the pixelllm package root above ${__dirname}`);
    dir = up;
  }
}

/** Where the addon is looked for. */
export function addonPath(): string {
  return process.env.PIXELLLM_NATIVE || path.join(packageRoot(), 'build', 'Release', 'pixelllm.node');
}

/** Loads the addon at `file` (no caching); BackendUnavailableError when missing, broken or of another contract. */
export function loadNativeFrom(file: string): NativeBinding {
  if (!existsSync(file)) {
    throw new BackendUnavailableError(
      `native addon not found at ${file}: build it with \`npm run build:native\` (cmake-js) or \`npm run build:gyp\``,
    );
  }
  let binding: NativeBinding;
  try {
    // RTLD_NOW: resolve every symbol at load time, so an addon linked without part of the native library fails
    // here with a catchable error instead of killing the process at its first call (lazy binding).
    const mod = { exports: {} as unknown };
    process.dlopen(mod, file, constants.dlopen.RTLD_NOW);
    binding = mod.exports as NativeBinding;
  } catch (err) {
    throw new BackendUnavailableError(`cannot load the native addon ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (binding.contractVersion !== CONTRACT_VERSION) {
    throw new BackendUnavailableError(
      `native addon ${file} speaks contract ${binding.contractVersion}, this package needs ${CONTRACT_VERSION}: rebuild it`,
    );
  }
  return binding;
}

let cached: NativeBinding | undefined;

/** The addon at addonPath(), loaded once. */
export function loadNative(): NativeBinding {
  cached ??= loadNativeFrom(addonPath());
  return cached;
}
