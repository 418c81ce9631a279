/**
 * Bad-input matrix, TensorRT plans: a copy of the golden model dir carrying plans built somewhere else
 * (trt/<other-gpu>-<other-version>/ with a manifest and a plan, and onnx/ graphs). Whatever the plans say, the CPU
 * backend ('auto' here, where no TensorRT runs) loads and answers exactly as before; `backend: 'tensorrt'` rejects
 * with a typed code; `pixelllm build-engines --check` reports every plan as stale with its reason (exit 1,
 * ENGINE_MISMATCH), and as usable only for the identity and files it was recorded for.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PixelLLM } from '../../lib';
import { assertEnginesUsable, inspectEngines } from '../../lib/engines';
import type { PlanCheckReport, PlanIdentity } from '../../lib/engines';
import { expectCode, loadGolden, stillAnswers } from './bad-input-helpers';
import type { Golden } from './bad-input-helpers';
import { runCli as cli } from '../helpers/cli';

const OTHER: PlanIdentity = { gpu: 'Other GPU 9000', computeCapability: '7.5', tensorrtVersion: '9.9.9' };
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('bad input: TensorRT plans from another GPU / TensorRT version', function () {
  this.timeout(120_000);
  let g: Golden;
  let tmp: string;
  let dir: string;
  let planDir: string;
  const plan = Buffer.from('a serialized engine for another GPU'.repeat(20));
  const onnx = Buffer.from('stand-in for onnx/image_encoder.onnx (never parsed without TensorRT)');

  /** The manifest as the plan store writes it; `configSha` defaults to what this directory needs now. */
  function writeManifest(configSha: string, planBytes = plan.length): void {
    const manifest = {
      format: 'pixelllm-tensorrt-plans', version: 1,
      gpu: OTHER.gpu, compute_capability: OTHER.computeCapability, tensorrt_version: OTHER.tensorrtVersion,
      plans: {
        image_encoder: {
          group: 'image_encoder', precision: 'fp32', onnx: 'image_encoder.onnx', onnx_sha256: sha(onnx),
          config_sha256: configSha, plan_sha256: sha(plan), plan_bytes: planBytes, build_seconds: 12.5,
        },
      },
    };
    writeFileSync(path.join(planDir, 'manifest.json'), JSON.stringify(manifest));
  }

  before(async function () {
    g = await loadGolden(this);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pixelllm-bad-plans-'));
    dir = path.join(tmp, 'model');
    mkdirSync(dir);
    for (const f of readdirSync(g.dir)) symlinkSync(path.join(g.dir, f), path.join(dir, f));
    mkdirSync(path.join(dir, 'onnx'));
    writeFileSync(path.join(dir, 'onnx', 'image_encoder.onnx'), onnx);
    planDir = path.join(dir, 'trt', 'Other_GPU_9000-9.9.9');
    mkdirSync(planDir, { recursive: true });
    writeFileSync(path.join(planDir, 'image_encoder.plan'), plan);
    writeManifest('0'.repeat(64));
    // the config hash this directory needs (reported by the check), so that the recorded plan is otherwise valid
    const first = await inspectEngines(dir, { target: OTHER });
    assert.equal(first.rows.length, 1);
    assert.match(first.rows[0].reason, /build configuration changed/);
    writeManifest(first.rows[0].expectedConfigSha256);
  });
  after(() => {
    g?.model.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async function () {
    if (g) await stillAnswers(g);
  });

  it("backend 'auto' ignores the plans and answers exactly as the golden model", async () => {
    const model = await PixelLLM.load(dir, { backend: 'auto', threads: 1 });
    try {
      assert.equal(model.info.backend, 'cpu');
      const image = await model.encode({ data: g.rgb, width: g.exp.width, height: g.exp.height, channels: 3 });
      const r = await model.caption(image).result;
      assert.deepEqual(r.tokens, g.exp.caption.tokens);
    } finally {
      model.dispose();
    }
  });

  it("backend 'tensorrt' rejects with a typed code", async () => {
    const report = await inspectEngines(dir);
    // this build cannot run TensorRT (no backend / no GPU): BACKEND_UNAVAILABLE. With TensorRT and a GPU the plans
    // would be rebuilt from onnx/, and the stand-in ONNX does not parse: MODEL_FORMAT.
    const err = await expectCode(report.targetKnown ? 'MODEL_FORMAT' : 'BACKEND_UNAVAILABLE', () =>
      PixelLLM.load(dir, { backend: 'tensorrt' }));
    if (!report.targetKnown) assert.match(err.message, /tensorrt/i);
  });

  it('build-engines --check reports the plan as stale with the reason (ENGINE_MISMATCH)', async () => {
    const running = await cli(['build-engines', '--check', dir, '--json']);
    assert.equal(running.code, 1, running.err);
    assert.match(running.err, /\[ENGINE_MISMATCH\]/);
    const report = JSON.parse(running.out) as PlanCheckReport;
    assert.equal(report.rows.length, 1);
    const row = report.rows[0];
    assert.equal(row.dir, 'trt/Other_GPU_9000-9.9.9');
    assert.equal(row.key, 'image_encoder');
    assert.equal(row.reusable, false);
    assert.deepEqual(row.built, OTHER);
    if (report.targetKnown) assert.match(row.reason, /built with TensorRT 9\.9\.9|built for (GPU|compute capability)/);
    else assert.match(row.reason, /built for GPU 'Other GPU 9000' \(sm 7\.5\) with TensorRT 9\.9\.9; this build has no TensorRT backend/);

    const h100 = ['--gpu', 'NVIDIA H100 80GB HBM3', '--sm', '9.0'];
    const otherTrt = await cli(['build-engines', '--check', dir, ...h100, '--trt-version', '10.16.1']);
    assert.equal(otherTrt.code, 1);
    assert.match(otherTrt.out, /stale: built with TensorRT 9\.9\.9, running TensorRT 10\.16\.1/);
    const otherGpu = await cli(['build-engines', '--check', dir, '--gpu', 'NVIDIA H100 80GB HBM3', '--sm', '7.5', '--trt-version', '9.9.9']);
    assert.equal(otherGpu.code, 1);
    assert.match(otherGpu.out, /stale: built for GPU 'Other GPU 9000', running 'NVIDIA H100 80GB HBM3'/);
    const otherSm = await cli(['build-engines', '--check', dir, '--gpu', OTHER.gpu, '--sm', '8.6', '--trt-version', '9.9.9']);
    assert.match(otherSm.out, /stale: built for compute capability 7\.5, running 8\.6/);

    // for exactly the identity it was built for, the same plan is usable: the check discriminates
    const same = await cli(['build-engines', '--check', dir, '--gpu', OTHER.gpu, '--sm', '7.5', '--trt-version', '9.9.9']);
    assert.equal(same.code, 0, same.err);
    assert.match(same.out, /image_encoder {2}fp32 {2}ok/);
  });

  it('a truncated plan, a changed ONNX or a corrupt manifest are stale for their own identity too', async () => {
    const check = () => inspectEngines(dir, { target: OTHER });
    writeFileSync(path.join(planDir, 'image_encoder.plan'), plan.subarray(0, 100));
    let r = await check();
    assert.match(r.rows[0].reason, /is 100 bytes, the manifest says 700 \(truncated\)/);
    assert.throws(() => assertEnginesUsable(dir, r), (e: Error & { code?: string }) => e.code === 'ENGINE_MISMATCH');
    writeFileSync(path.join(planDir, 'image_encoder.plan'), plan);

    writeFileSync(path.join(dir, 'onnx', 'image_encoder.onnx'), Buffer.concat([onnx, Buffer.from(' ')]));
    r = await check();
    assert.match(r.rows[0].reason, /onnx\/image_encoder\.onnx changed since the plan was built/);
    writeFileSync(path.join(dir, 'onnx', 'image_encoder.onnx'), onnx);

    const manifest = path.join(planDir, 'manifest.json');
    for (const [text, reason] of [
      ['{"format": "pixelllm-tensorrt-plans", ', /manifest\.json: not valid JSON/],
      ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]', /not a JSON object/],
      [JSON.stringify({ format: 'pixelllm-tensorrt-plans', version: 1, gpu: 'x', compute_capability: '1.0', tensorrt_version: '1.0.0',
        plans: { image_encoder: { onnx: 'image_encoder.onnx', onnx_sha256: sha(onnx), config_sha256: sha(''), plan_sha256: sha(plan), plan_bytes: 1e300 } } }), /plan_bytes/],
    ] as const) {
      writeFileSync(manifest, text);
      r = await check();
      assert.equal(r.rows.length, 1);
      assert.equal(r.rows[0].key, '');
      assert.equal(r.rows[0].reusable, false);
      assert.match(r.rows[0].reason, reason);
    }
    rmSync(manifest);
    r = await check();
    assert.equal(r.rows[0].reason, 'no manifest.json');
    const res = await cli(['build-engines', '--check', dir]);
    assert.equal(res.code, 1);
    assert.match(res.err, /cannot be used: trt\/Other_GPU_9000-9\.9\.9\/manifest\.json: no manifest\.json \[ENGINE_MISMATCH\]/);
    // the CPU backend still loads the directory
    const model = await PixelLLM.load(dir, { backend: 'auto', threads: 1 });
    model.dispose();
  });
});
