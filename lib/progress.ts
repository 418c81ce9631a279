/**
 * A one-line progress bar on stderr for long CLI work (dense captioning, eval). Drawn only when the stream is a
 * TTY (never into pipes, logs or captured output); redraws at most 10 times a second; `done()` clears the line.
 */
export interface Progress {
  /** Advances by `n` steps (default 1); `note` replaces the text after the bar. */
  tick(n?: number, note?: string): void;
  /** Clears the bar (call once at the end, also on errors). */
  done(): void;
}

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(chunk: string): boolean;
}

const NOOP: Progress = { tick() {}, done() {} };

/** The bar text for `done` of `total` steps after `elapsedMs` (exported for tests). */
export function formatProgress(label: string, done: number, total: number, elapsedMs: number, note = '', columns = 80): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const eta = done > 0 && done < total ? ` eta ${Math.ceil(((total - done) * elapsedMs) / done / 1000)}s` : '';
  const tail = ` ${done}/${total}${eta}${note ? ' ' + note : ''}`;
  const width = Math.max(10, Math.min(30, columns - label.length - tail.length - 4));
  const fill = Math.round(frac * width);
  return `${label} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}]${tail}`.slice(0, Math.max(20, columns - 1));
}

export function progressBar(total: number, label: string, stream: ProgressStream = process.stderr, now: () => number = Date.now): Progress {
  if (!stream.isTTY) return NOOP;
  const start = now();
  let count = 0;
  let note = '';
  let last = 0;
  let finished = false;
  const draw = (force: boolean) => {
    const t = now();
    if (!force && t - last < 100) return;
    last = t;
    stream.write(`\r\x1b[2K${formatProgress(label, count, total, t - start, note, stream.columns ?? 80)}`);
  };
  draw(true);
  return {
    tick(n = 1, text?: string) {
      if (finished) return;
      count += n;
      if (text !== undefined) note = text;
      draw(count >= total);
    },
    done() {
      if (finished) return;
      finished = true;
      stream.write('\r\x1b[2K');
    },
  };
}
