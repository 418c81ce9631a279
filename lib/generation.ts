/**
 * Generation: the object caption() and describe() return. It starts generating at once; iterate it
 * (for await) to receive one TokenEvent per token as the native side produces them, and/or await `.result`.
 * Breaking out of the loop early cancels the generation (`.result` then rejects with AbortedError).
 */
import { AbortedError, InvalidArgumentError, PixelLLMError, fromNative } from './errors';
import type { CaptionResult, Generation, TokenEvent } from './types';

export interface GenerationHooks {
  /** Runs the generation, calling `emit` once per token in order; resolves with the final result. */
  run(emit: (event: TokenEvent) => void): Promise<CaptionResult>;
  /** Asks the native side to stop (sets the call's cancel flag). */
  cancel(): void;
}

export class GenerationStream implements Generation {
  readonly result: Promise<CaptionResult>;
  private readonly queue: TokenEvent[] = [];
  private waiter: (() => void) | undefined;
  private finished = false;
  private failure: PixelLLMError | undefined;
  private iterated = false;

  constructor(private readonly hooks: GenerationHooks, signal?: AbortSignal) {
    const onAbort = () => this.hooks.cancel();
    if (signal?.aborted) {
      this.result = Promise.reject(new AbortedError('aborted before it started', { cause: signal.reason }));
    } else {
      signal?.addEventListener('abort', onAbort, { once: true });
      this.result = hooks.run((event) => this.push(event)).catch((err: unknown) => {
        const e = fromNative(err);
        throw e.code === 'ABORTED' && signal?.aborted ? new AbortedError(e.message, { cause: signal.reason }) : e;
      });
    }
    this.result.then(
      () => this.finish(undefined),
      (err: PixelLLMError) => this.finish(err),
    ).finally(() => signal?.removeEventListener('abort', onAbort));
    // `.result` may be ignored by a caller that only iterates: keep that from being an unhandled rejection.
    this.result.catch(() => undefined);
  }

  cancel(): void {
    if (!this.finished) this.hooks.cancel();
  }

  private push(event: TokenEvent): void {
    this.queue.push(event);
    this.wake();
  }

  private finish(err: PixelLLMError | undefined): void {
    this.finished = true;
    this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    if (this.iterated) throw new InvalidArgumentError('a generation can be iterated only once');
    this.iterated = true;
    return {
      next: async (): Promise<IteratorResult<TokenEvent>> => {
        for (;;) {
          const event = this.queue.shift();
          if (event) return { value: event, done: false };
          if (this.finished) {
            if (this.failure) throw this.failure;
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (this.waiter = resolve));
        }
      },
      return: async (): Promise<IteratorResult<TokenEvent>> => {
        this.cancel();
        this.queue.length = 0;
        return { value: undefined, done: true };
      },
    };
  }
}
