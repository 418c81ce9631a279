/**
 * PixelLLM: the public model class. Loads a model directory (config.json, model.safetensors, tokenizer.json)
 * into the native runtime and runs the tasks; every call is asynchronous and runs off the event loop.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { DisposedError, InternalError, InvalidArgumentError, InvalidBoxError, LimitExceededError, ModelFormatError, ModelNotFoundError, mapNative } from './errors';
import { GenerationStream } from './generation';
import { loadImage } from './image';
import { Mask } from './masks';
import { loadNative, packageRoot } from './native';
import type { NativeBox, NativeCancelToken, NativeFeatures, NativeGenerateResult, NativeModel, NativeTokenEvent } from './native';
import { TextTokenizer } from './tokenizer';
import { BACKENDS, MASK_RESIZES, PRECISIONS } from './types';
import type { TokenTextStream } from './tokenizer';
import type {
  Box,
  CaptionResult,
  DenseCaption,
  DenseOptions,
  GenerateOptions,
  Generation,
  ImageInput,
  ImageOptions,
  LoadOptions,
  ModelInfo,
  ReferOptions,
  ReferResult,
  SegmentResult,
  TokenEvent,
} from './types';

/** The trained demo model shipped with the package. */
export function demoModelDir(): string {
  return path.join(packageRoot(), 'engines', 'demo');
}

const featuresOf = new WeakMap<EncodedImage, NativeFeatures>();

/** Encoded image features (cached encoder output): pass to any task to skip re-encoding. */
export class EncodedImage {
  readonly width: number;
  readonly height: number;

  /** @internal */
  constructor(features: NativeFeatures) {
    this.width = features.width;
    this.height = features.height;
    featuresOf.set(this, features);
  }

  /**
   * Frees the features now (otherwise the garbage collector does: V8 is told their native size, so dropped
   * features count towards its memory pressure); later use fails with DisposedError.
   */
  dispose(): void {
    featuresOf.get(this)?.dispose();
  }
}

/** Throws InvalidArgumentError unless `value` is one of `choices` (`name` says which option it was). */
export function checkChoice(name: string, value: unknown, choices: readonly string[]): void {
  if (!choices.includes(value as string)) {
    throw new InvalidArgumentError(`${name} must be ${choices.map((c) => `'${c}'`).join(' | ')}, got ${String(value)}`);
  }
}

function checkOptionalInt(name: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
}

function toNativeBox(box: unknown): NativeBox {
  if (!Array.isArray(box) || box.length !== 4 || box.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
    throw new InvalidBoxError('box must be [x0, y0, x1, y1] with 4 finite numbers (pixels)');
  }
  return [box[0], box[1], box[2], box[3]];
}

function toEvent(e: NativeTokenEvent, text: string): TokenEvent {
  return { index: e.index, token: e.token, text, point: [e.x, e.y], box: [...e.box] as Box, logprob: e.logprob };
}

/** The tasks whose context prompt a model directory may set (config.json `task_prompts`). */
export type PromptTask = 'caption' | 'describe' | 'dense';

/**
 * The default task prompts of a model directory: config.json may carry `task_prompts` ({ caption, describe,
 * dense }: the contexts the model was trained with, e.g. the official 'a long image caption:'). Absent = none.
 */
export function readTaskPrompts(dir: string): Partial<Record<PromptTask, string>> {
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  } catch {
    return {}; // the native loader reports a missing or unreadable config.json with its own typed error
  }
  const raw = (cfg as { task_prompts?: unknown }).task_prompts;
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelFormatError(`${dir}/config.json: task_prompts must be an object of strings`);
  }
  const out: Partial<Record<PromptTask, string>> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!['caption', 'describe', 'dense'].includes(k) || typeof v !== 'string' || v.trim() === '') {
      throw new ModelFormatError(`${dir}/config.json: task_prompts.${k} must be a non-empty string for caption, describe or dense`);
    }
    out[k as PromptTask] = v;
  }
  return out;
}

export class PixelLLM implements AsyncDisposable {
  readonly info: ModelInfo;
  /** Default prompts per task from config.json `task_prompts` (used when a call passes no `prompt`). */
  readonly taskPrompts: Readonly<Partial<Record<PromptTask, string>>> = {};
  private inflight = 0;
  private disposeRequested = false;

  private constructor(private readonly native: NativeModel, readonly tokenizer: TextTokenizer) {
    this.info = native.info() as ModelInfo;
  }

  /**
   * Loads a model directory (default: the shipped demo model). Throws ModelNotFoundError, ModelFormatError,
   * ConfigMismatchError, TokenizerMismatchError, BackendUnavailableError.
   */
  static async load(dir: string = demoModelDir(), options: LoadOptions = {}): Promise<PixelLLM> {
    if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('dir must be a non-empty string');
    const { backend = 'auto', threads = 0, decoderWeights = 'fp32', encoderPrecision = 'fp32', maskResize = 'sam' } = options;
    checkChoice('backend', backend, BACKENDS);
    checkChoice('maskResize', maskResize, MASK_RESIZES);
    checkChoice('decoderWeights', decoderWeights, PRECISIONS);
    checkChoice('encoderPrecision', encoderPrecision, PRECISIONS);
    checkOptionalInt('threads', threads, 0, 1024);
    const abs = path.resolve(dir);
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new ModelNotFoundError(`model directory not found: ${abs}`);
    const tokenizer = await TextTokenizer.fromFile(path.join(abs, 'tokenizer.json'));
    const taskPrompts = readTaskPrompts(abs);
    const binding = loadNative();
    const native = await mapNative(() => binding.Model.load(abs, { backend, threads, decoderWeights, encoderPrecision, maskResize }));
    const model = new PixelLLM(native, tokenizer);
    (model as { taskPrompts: Partial<Record<PromptTask, string>> }).taskPrompts = taskPrompts;
    try {
      tokenizer.checkModel(model.info);
    } catch (err) {
      native.dispose();
      throw err;
    }
    return model;
  }

  /** True once dispose() was called (the native memory goes when the calls in flight have finished). */
  get disposed(): boolean {
    return this.disposeRequested;
  }

  /** Context tokens for a task: the caller's prompt, else the model's default (`null` = explicitly none). */
  private contextFor(task: PromptTask, prompt: string | null | undefined): number[] | undefined {
    const text = prompt === undefined ? this.taskPrompts[task] : prompt;
    if (text === undefined || text === null) return undefined;
    const context = this.tokenizer.promptTokens(text, this.info);
    if (context.length > this.info.maxCaptionLength) {
      throw new LimitExceededError(`the prompt has ${context.length} tokens, the model takes at most ${this.info.maxCaptionLength}`);
    }
    return context;
  }

  private live(): NativeModel {
    if (this.disposeRequested || this.native.disposed) throw new DisposedError('the model was disposed');
    return this.native;
  }

  /**
   * Runs one API call: refused once dispose() was called; a call that started before dispose() runs to the
   * end (image decoding included), and the native model is freed after the last such call.
   */
  private track<T>(fn: (native: NativeModel) => Promise<T>): Promise<T> {
    let native: NativeModel;
    try {
      native = this.live();
    } catch (err) {
      return Promise.reject(err);
    }
    this.inflight++;
    const release = () => {
      if (--this.inflight === 0 && this.disposeRequested) this.native.dispose();
    };
    let promise: Promise<T>;
    try {
      promise = fn(native);
    } catch (err) {
      release();
      return Promise.reject(err);
    }
    return promise.finally(release);
  }

  /** Decodes (see loadImage) and encodes an image; the result can be reused across tasks. */
  async encode(input: ImageInput | EncodedImage, options?: ImageOptions): Promise<EncodedImage> {
    if (input instanceof EncodedImage) {
      this.live(); // a disposed model rejects here too, like every other call
      return input;
    }
    return this.track((native) => this.encodeWith(native, input, options));
  }

  private async encodeWith(native: NativeModel, input: ImageInput, options?: ImageOptions): Promise<EncodedImage> {
    const rgb = await loadImage(input, options);
    return new EncodedImage(await mapNative(() => native.encode(rgb.data, rgb.width, rgb.height)));
  }

  private async features(native: NativeModel, input: ImageInput | EncodedImage): Promise<NativeFeatures> {
    const encoded = input instanceof EncodedImage ? input : await this.encodeWith(native, input);
    const features = featuresOf.get(encoded);
    if (!features) throw new InternalError('encoded image without features');
    return features;
  }

  private cancelToken(signal: AbortSignal | undefined): { token: NativeCancelToken; release: () => void } {
    const token = new (loadNative().CancelToken)();
    if (signal?.aborted) token.cancel();
    const onAbort = () => token.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    return { token, release: () => signal?.removeEventListener('abort', onAbort) };
  }

  /** maxTokens: an integer >= 0 (0 = the model's default), at most the model's max_caption_length. */
  private checkMaxTokens(value: number | undefined): void {
    checkOptionalInt('maxTokens', value, 0, 4096);
    if (value !== undefined && value > this.info.maxCaptionLength) {
      throw new LimitExceededError(`maxTokens ${value} is more than the model's max_caption_length ${this.info.maxCaptionLength}`);
    }
  }

  private events(result: NativeGenerateResult, stream: TokenTextStream): TokenEvent[] {
    return result.events.map((e) => toEvent(e, stream.push(e.token)));
  }

  private generation(
    input: ImageInput | EncodedImage,
    request: () => { task: 'caption' | 'describe'; box?: NativeBox },
    options: GenerateOptions,
  ): Generation {
    // Bad arguments and a disposed model are reported by the Generation (`.result` rejects, the first iteration
    // throws), with the same typed errors the promise-returning calls reject with; nothing throws synchronously.
    let req: { task: 'caption' | 'describe'; box?: NativeBox };
    let context: number[] | undefined;
    try {
      this.checkMaxTokens(options.maxTokens);
      checkOptionalInt('beams', options.beams, 1, 16);
      req = request();
      context = this.contextFor(req.task, options.prompt);
    } catch (err) {
      return new GenerationStream({ run: () => Promise.reject(err), cancel: () => undefined }, options.signal);
    }
    const token = new (loadNative().CancelToken)();
    return new GenerationStream(
      {
        run: (emit) => this.track(async (native) => {
          const features = await this.features(native, input);
          const stream = this.tokenizer.stream();
          const events: TokenEvent[] = [];
          const result = await native.generate(
            features,
            { ...req, contextTokens: context && Int32Array.from(context), maxTokens: options.maxTokens, beams: options.beams },
            (e) => {
              const event = toEvent(e, stream.push(e.token));
              events.push(event);
              emit(event);
            },
            token,
          );
          const caption: CaptionResult = {
            text: this.tokenizer.decode(result.tokens),
            tokens: Array.from(result.tokens),
            events,
            score: result.score,
          };
          if (result.box) caption.box = [...result.box] as Box;
          return caption;
        }),
        cancel: () => token.cancel(),
      },
      options.signal,
    );
  }

  /** Captions the whole image; stream the words (with their points) or await `.result`. */
  caption(input: ImageInput | EncodedImage, options: GenerateOptions = {}): Generation {
    return this.generation(input, () => ({ task: 'caption' }), options);
  }

  /** Captions the region `box` ([x0, y0, x1, y1] pixels). */
  describe(input: ImageInput | EncodedImage, box: Box, options: GenerateOptions = {}): Generation {
    return this.generation(input, () => ({ task: 'describe', box: toNativeBox(box) }), options);
  }

  /** Finds the region a referring expression names: its box, and with `mask: true` its SAM mask. */
  async refer(input: ImageInput | EncodedImage, expression: string, options: ReferOptions = {}): Promise<ReferResult> {
    this.live();
    const { context, text } = this.tokenizer.referTokens(expression, this.info);
    const limit = this.info.maxCaptionLength;
    if (text.length > limit || context.length > limit) {
      throw new LimitExceededError(`the expression has ${text.length} tokens with bos/eos, the model takes at most ${limit}`);
    }
    return this.track(async (native) => {
      const features = await this.features(native, input);
      const { token, release } = this.cancelToken(options.signal);
      try {
        const result = await mapNative(() =>
          native.generate(
            features,
            { task: 'refer', contextTokens: Int32Array.from(context), textTokens: Int32Array.from(text), withMask: options.mask === true },
            null,
            token,
          ),
        );
        if (!result.box) throw new InternalError('refer returned no box');
        const out: ReferResult = {
          box: [...result.box] as Box,
          score: result.score,
          tokens: Array.from(result.tokens),
          events: this.events(result, this.tokenizer.stream()),
        };
        if (result.mask) {
          out.mask = new Mask(result.mask.data, result.mask.width, result.mask.height);
          out.maskScore = result.mask.iou;
        }
        return out;
      } finally {
        release();
      }
    });
  }

  /** SAM mask for a box prompt. */
  async segment(input: ImageInput | EncodedImage, box: Box, options: { signal?: AbortSignal } = {}): Promise<SegmentResult> {
    const nbox = toNativeBox(box);
    return this.track(async (native) => {
      const features = await this.features(native, input);
      const { token, release } = this.cancelToken(options.signal);
      try {
        const m = await mapNative(() => native.segment(features, nbox, token));
        return { mask: new Mask(m.data, m.width, m.height), score: m.iou, box: [...m.box] as Box };
      } finally {
        release();
      }
    });
  }

  /** Finds the objects in the image and captions each one. */
  async denseCaption(input: ImageInput | EncodedImage, options: DenseOptions = {}): Promise<DenseCaption[]> {
    checkOptionalInt('maxBoxes', options.maxBoxes, 0, 1000);
    this.checkMaxTokens(options.maxTokens);
    const context = this.contextFor('dense', options.prompt);
    return this.track(async (native) => {
      const features = await this.features(native, input);
      const { token, release } = this.cancelToken(options.signal);
      try {
        const { maxBoxes, scoreThreshold, nmsIou, maxTokens } = options;
        const contextTokens = context && Int32Array.from(context);
        const items = await mapNative(() => native.dense(features, { maxBoxes, scoreThreshold, nmsIou, maxTokens, contextTokens }, token));
        return items.map((it) => ({
          box: [...it.box] as Box,
          score: it.score,
          text: this.tokenizer.decode(it.tokens),
          tokens: Array.from(it.tokens),
          captionScore: it.captionScore,
        }));
      } finally {
        release();
      }
    });
  }

  /**
   * Frees the native model; calls already started finish first. Later calls report DisposedError (code DISPOSED)
   * asynchronously: the promise of encode/refer/segment/denseCaption rejects, and the Generation of
   * caption/describe rejects `.result` and throws on the first iteration.
   */
  dispose(): void {
    this.disposeRequested = true;
    if (this.inflight === 0) this.native.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
