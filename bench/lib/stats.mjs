// Small statistics helpers: medians and spreads of timing samples.
export function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function quantile(xs, q) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

// { median, min, max, spread = (max - min) / median, n }
export function summary(xs) {
  const med = median(xs);
  if (med === null) return { median: null, min: null, max: null, spread: null, n: 0 };
  const min = Math.min(...xs), max = Math.max(...xs);
  return { median: round(med), min: round(min), max: round(max), spread: round((max - min) / med), n: xs.length };
}

export function round(x, digits = 4) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(a, b) {
  return a === null || b === null || !b ? null : round(a / b, 3);
}
