import * as assert from 'node:assert/strict';
import { InvalidArgumentError } from '../lib';
import { parseCli } from '../lib/cli';
import { buildEngines, inspectEngines } from '../lib/engines';
import { addonExpected, testModelDir } from './helpers/native';
import { runCli as cli } from './helpers/cli';

describe('cli build-engines', () => {
  it('parses build and check', () => {
    assert.deepEqual(parseCli(['build-engines', 'm', '--fp16', '--json']), {
      command: 'build-engines', dir: 'm', backend: 'tensorrt', threads: 0, json: true, mask: false, fp16: true, check: false,
    });
    const c = parseCli(['build-engines', '--check', 'm', '--gpu', 'NVIDIA H100', '--sm', '9.0', '--trt-version', '10.16.1']);
    assert.equal(c.check, true);
    assert.deepEqual(c.target, { gpu: 'NVIDIA H100', computeCapability: '9.0', tensorrtVersion: '10.16.1' });
  });

  it('rejects bad usage with InvalidArgumentError', () => {
    for (const argv of [
      ['build-engines'],
      ['build-engines', 'm', 'extra'],
      ['build-engines', 'm', '--model', 'x'],
      ['build-engines', '--check', 'm', '--gpu', 'x'],
      ['build-engines', 'm', '--gpu', 'x', '--sm', '9.0', '--trt-version', '10.16.1'],
      ['build-engines', '--check', 'm', '--gpu', 'x', '--sm', 'nine', '--trt-version', '10.16.1'],
      ['build-engines', '--check', 'm', '--fp16'],
      ['caption', 'a.png', '--fp16'],
      ['caption', 'a.png', '--check'],
    ]) {
      assert.throws(() => parseCli(argv), InvalidArgumentError, argv.join(' '));
    }
  });

  describe('without TensorRT', function () {
    this.timeout(60_000);
    let dir: string | undefined;
    before(async function () {
      dir = testModelDir();
      if (!addonExpected() || !dir) this.skip();
      const report = await inspectEngines(dir!);
      if (report.targetKnown) {
        console.log('      (skipped: this build runs TensorRT)');
        this.skip();
      }
    });

    it('buildEngines rejects with BACKEND_UNAVAILABLE saying how to build with TensorRT', async () => {
      await assert.rejects(buildEngines(dir!), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'BACKEND_UNAVAILABLE');
        assert.match(e.message, /no TensorRT backend/);
        assert.match(e.message, /TENSORRT_ROOT=.*PIXELLLM_TENSORRT=ON/);
        assert.match(e.message, /docs\/tensorrt\.md/);
        return true;
      });
    });

    it('`pixelllm build-engines DIR` exits 1 with [BACKEND_UNAVAILABLE] and the how-to', async () => {
      const r = await cli(['build-engines', dir!, '--fp16']);
      assert.equal(r.code, 1);
      assert.equal(r.out, '');
      assert.match(r.err, /^pixelllm: build-engines: this build has no TensorRT backend; rebuild the addon with TensorRT/);
      assert.match(r.err, /\[BACKEND_UNAVAILABLE\]\n$/);
    });

    it('--check of a directory without plans exits 1 with ENGINE_MISMATCH', async () => {
      const r = await cli(['build-engines', '--check', dir!]);
      assert.equal(r.code, 1);
      assert.match(r.out, /^target: none \(this build has no TensorRT backend\)\nno plans/);
      assert.match(r.err, /has no TensorRT plans \(pixelllm build-engines .*\) \[ENGINE_MISMATCH\]/);
    });
  });
});
