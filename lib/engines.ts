/**
 * TensorRT plans of a model directory (docs/tensorrt.md): build them ahead of the first load, and check the
 * recorded ones against the running (or a named) GPU and TensorRT version and the current files.
 *
 *   await buildEngines(dir, { fp16, onProgress })   -> { identity, planDir, rows }   (BACKEND_UNAVAILABLE without TensorRT)
 *   await inspectEngines(dir, { target })            -> { target, targetKnown, rows } (never builds; works without TensorRT)
 *   assertEnginesUsable(report)                      -> throws EngineMismatchError when a plan is stale or there is none
 */
import * as path from 'node:path';
import { BackendUnavailableError, EngineMismatchError, mapNative } from './errors';
import { loadNative } from './native';
import type { NativeBinding } from './native';

export interface PlanIdentity {
  gpu: string;
  computeCapability: string;
  tensorrtVersion: string;
}

export interface EngineBuildRow {
  /** ONNX stem the plan was built from: `decoder_step` or `decoder_step.fp16`. */
  key: string;
  group: string;
  precision: 'fp32' | 'fp16';
  /** false: an up-to-date plan was reused. */
  built: boolean;
  /** Why it was built (empty when reused). */
  reason: string;
  seconds: number;
  planBytes: number;
}

export interface EngineBuildResult {
  identity: PlanIdentity;
  planDir: string;
  rows: EngineBuildRow[];
}

export interface EngineBuildProgress {
  index: number;
  total: number;
  group: string;
  done: boolean;
}

export interface PlanCheckRow {
  /** `trt/<gpu>-<version>`. */
  dir: string;
  /** Empty for a folder without a usable manifest (then `reason` says why). */
  key: string;
  group: string;
  precision: string;
  built: PlanIdentity;
  reusable: boolean;
  reason: string;
  planBytes: number;
  expectedOnnxSha256: string;
  expectedConfigSha256: string;
}

export interface PlanCheckReport {
  /** What the plans were checked against. */
  target: PlanIdentity;
  /** false in a build without TensorRT / without a GPU (and no target given): nothing is usable. */
  targetKnown: boolean;
  targetReason: string;
  rows: PlanCheckRow[];
}

interface EngineBinding {
  buildEngines(dir: string, options: { fp16: boolean; onProgress?: (e: EngineBuildProgress) => void }): Promise<EngineBuildResult>;
  inspectEngines(dir: string, options: Partial<PlanIdentity>): Promise<PlanCheckReport>;
}

function binding(): EngineBinding {
  const b = loadNative() as NativeBinding & Partial<EngineBinding>;
  if (typeof b.buildEngines !== 'function' || typeof b.inspectEngines !== 'function') {
    throw new BackendUnavailableError('the native addon predates buildEngines/inspectEngines: rebuild it (npm run build:native)');
  }
  return b as EngineBinding;
}

/** Builds (or reuses) every plan of `dir` with the options PixelLLM.load uses; `fp16` requires the fp16 exports. */
export async function buildEngines(
  dir: string,
  options: { fp16?: boolean; onProgress?: (e: EngineBuildProgress) => void } = {},
): Promise<EngineBuildResult> {
  return mapNative(() => binding().buildEngines(path.resolve(dir), { fp16: options.fp16 ?? false, onProgress: options.onProgress }));
}

/** Checks every recorded plan of `dir` against `target` (default: the running GPU and TensorRT, if any). */
export async function inspectEngines(dir: string, options: { target?: PlanIdentity } = {}): Promise<PlanCheckReport> {
  return mapNative(() => binding().inspectEngines(path.resolve(dir), options.target ?? {}));
}

/** One line per plan: `trt/X  decoder_step  fp16  ok | stale: <reason>`. */
export function formatPlanCheck(report: PlanCheckReport): string {
  const t = report.target;
  const head = report.targetKnown
    ? `target: ${t.gpu} (sm ${t.computeCapability}), TensorRT ${t.tensorrtVersion}`
    : `target: none (${report.targetReason || 'no TensorRT'})`;
  if (report.rows.length === 0) return `${head}\nno plans (pixelllm build-engines DIR builds them)`;
  const rows = report.rows.map((r) => `${r.dir}  ${r.key || '-'}  ${r.precision || '-'}  ${r.reusable ? 'ok' : `stale: ${r.reason}`}`);
  return [head, ...rows].join('\n');
}

/** Throws EngineMismatchError (ENGINE_MISMATCH) naming every stale plan, or when there is no plan at all. */
export function assertEnginesUsable(dir: string, report: PlanCheckReport): void {
  if (report.rows.length === 0) throw new EngineMismatchError(`${dir} has no TensorRT plans (pixelllm build-engines ${dir})`);
  const stale = report.rows.filter((r) => !r.reusable);
  if (stale.length > 0) {
    const list = stale.map((r) => `${r.dir}/${r.key || 'manifest.json'}: ${r.reason}`).join('; ');
    throw new EngineMismatchError(`${stale.length} of ${report.rows.length} TensorRT plans in ${dir} cannot be used: ${list}`);
  }
}

/** Human summary of a build: one row per plan and the total. */
export function formatBuild(result: EngineBuildResult): string {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const id = result.identity;
  const lines = [`${result.planDir}: ${id.gpu} (sm ${id.computeCapability}), TensorRT ${id.tensorrtVersion}`];
  for (const r of result.rows) {
    lines.push(`${r.group.padEnd(16)} ${r.precision}  ${(r.built ? 'built' : 'reused').padEnd(6)}  ${r.seconds.toFixed(1).padStart(7)} s  ${mb(r.planBytes).padStart(10)}${r.built && r.reason ? `  (${r.reason})` : ''}`);
  }
  const total = result.rows.reduce((s, r) => s + r.planBytes, 0);
  const secs = result.rows.reduce((s, r) => s + r.seconds, 0);
  lines.push(`${result.rows.length} plans, ${result.rows.filter((r) => r.built).length} built, ${secs.toFixed(1)} s, ${mb(total)}`);
  return lines.join('\n');
}
