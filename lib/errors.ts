/**
 * Typed errors. Every error pixelllm raises is a PixelLLMError whose `code` is one of the stable strings shared
 * with the native side (pixelllm::core::ErrorCode in native/core/error.h); each code has its own subclass, so
 * `err instanceof InvalidBoxError` and `err.code === 'INVALID_BOX'` are equivalent.
 */

export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'INVALID_IMAGE',
  'INVALID_BOX',
  'INVALID_TEXT',
  'MODEL_NOT_FOUND',
  'MODEL_FORMAT',
  'CONFIG_MISMATCH',
  'TOKENIZER_MISMATCH',
  'BACKEND_UNAVAILABLE',
  'ENGINE_MISMATCH',
  'OUT_OF_MEMORY',
  'LIMIT_EXCEEDED',
  'ABORTED',
  'DISPOSED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

export class PixelLLMError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_ARGUMENT', message, options); }
}
export class InvalidImageError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_IMAGE', message, options); }
}
export class InvalidBoxError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_BOX', message, options); }
}
export class InvalidTextError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_TEXT', message, options); }
}
export class ModelNotFoundError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('MODEL_NOT_FOUND', message, options); }
}
export class ModelFormatError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('MODEL_FORMAT', message, options); }
}
export class ConfigMismatchError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('CONFIG_MISMATCH', message, options); }
}
export class TokenizerMismatchError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('TOKENIZER_MISMATCH', message, options); }
}
export class BackendUnavailableError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('BACKEND_UNAVAILABLE', message, options); }
}
export class EngineMismatchError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('ENGINE_MISMATCH', message, options); }
}
export class OutOfMemoryError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('OUT_OF_MEMORY', message, options); }
}
export class LimitExceededError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('LIMIT_EXCEEDED', message, options); }
}
export class AbortedError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('ABORTED', message, options); }
}
export class DisposedError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('DISPOSED', message, options); }
}
export class InternalError extends PixelLLMError {
  constructor(message: string, options?: { cause?: unknown }) { super('INTERNAL', message, options); }
}

type ErrorClass = new (message: string, options?: { cause?: unknown }) => PixelLLMError;

const CLASSES: Record<ErrorCode, ErrorClass> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  INVALID_IMAGE: InvalidImageError,
  INVALID_BOX: InvalidBoxError,
  INVALID_TEXT: InvalidTextError,
  MODEL_NOT_FOUND: ModelNotFoundError,
  MODEL_FORMAT: ModelFormatError,
  CONFIG_MISMATCH: ConfigMismatchError,
  TOKENIZER_MISMATCH: TokenizerMismatchError,
  BACKEND_UNAVAILABLE: BackendUnavailableError,
  ENGINE_MISMATCH: EngineMismatchError,
  OUT_OF_MEMORY: OutOfMemoryError,
  LIMIT_EXCEEDED: LimitExceededError,
  ABORTED: AbortedError,
  DISPOSED: DisposedError,
  INTERNAL: InternalError,
};

/** The subclass for `code`. */
export function errorClassFor(code: ErrorCode): ErrorClass {
  return CLASSES[code];
}

/** A new error of the subclass for `code`. */
export function makeError(code: ErrorCode, message: string, cause?: unknown): PixelLLMError {
  const Cls = CLASSES[code];
  return cause === undefined ? new Cls(message) : new Cls(message, { cause });
}

/**
 * Converts an error thrown by the native addon (a plain Error with a `code` string) into the matching
 * PixelLLMError subclass, keeping the original as `cause`. PixelLLMErrors pass through unchanged; any other
 * error becomes an InternalError (a bug: report it).
 */
export function fromNative(err: unknown): PixelLLMError {
  if (err instanceof PixelLLMError) return err;
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    if (isErrorCode(code)) return makeError(code, err.message, err);
    return new InternalError(`internal error: ${err.message}`, { cause: err });
  }
  return new InternalError(`internal error: non-Error value thrown: ${String(err)}`, { cause: err });
}

/** Runs `fn`, converting whatever it throws (synchronously or asynchronously) with fromNative. */
export async function mapNative<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err);
  }
}
