import * as assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { BackendUnavailableError, ERROR_CODES } from '../lib';
import { CONTRACT_VERSION, addonPath, loadNative, loadNativeFrom } from '../lib/native';
import type { NativeBinding } from '../lib/native';
import { addonExpected } from './helpers/native';
import { scratch } from './helpers/paths';

describe('native addon (no model needed)', function () {
  let binding: NativeBinding;
  before(function () {
    if (!addonExpected()) this.skip(); // the pipeline is not written yet: nothing to link the addon against
    assert.ok(existsSync(addonPath()), `addon missing at ${addonPath()}: npm run build:native`);
    binding = loadNative();
  });

  it('speaks this contract version and mirrors the error codes', () => {
    assert.equal(binding.contractVersion, CONTRACT_VERSION);
    assert.ok(binding.napiVersion >= 8);
    assert.deepEqual(binding.errorCodes, [...ERROR_CODES]);
  });

  it('refuses `new Model()` and `new Features()` from JS', () => {
    const b = binding as unknown as Record<string, new (...a: unknown[]) => unknown>;
    assert.throws(() => new b.Model(), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => new b.Features(), { code: 'INVALID_ARGUMENT' });
  });

  it('has cancel tokens', () => {
    const t = new binding.CancelToken();
    assert.equal(t.cancelled, false);
    t.cancel();
    assert.equal(t.cancelled, true);
  });

  it('validates Model.load arguments synchronously', () => {
    const load = binding.Model.load as (...a: unknown[]) => unknown;
    assert.throws(() => load(42), { code: 'INVALID_ARGUMENT', message: /dir must be a string/ });
    assert.throws(() => load(''), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => load('x\0y'), { code: 'INVALID_ARGUMENT', message: /NUL/ });
    assert.throws(() => load('.', []), { code: 'INVALID_ARGUMENT', message: /options must be an object/ });
    assert.throws(() => load('.', { backend: 'gpu' }), { code: 'INVALID_ARGUMENT', message: /backend/ });
    assert.throws(() => load('.', { threads: 1.5 }), { code: 'INVALID_ARGUMENT', message: /threads/ });
    assert.throws(() => load('.', { threads: -1 }), { code: 'INVALID_ARGUMENT', message: /threads/ });
    assert.throws(() => load('.', { threads: NaN }), { code: 'INVALID_ARGUMENT', message: /threads/ });
  });

  it('rejects a missing model directory with MODEL_NOT_FOUND, off the event loop', async () => {
    await assert.rejects(binding.Model.load('/nonexistent/pixelllm-model', { backend: 'cpu', threads: 1 }), { code: 'MODEL_NOT_FOUND' });
  });
});

describe('native addon loading', () => {
  let tmp: ReturnType<typeof scratch>;
  before(() => (tmp = scratch()));
  after(() => tmp.cleanup());

  it('reports a missing addon as BackendUnavailableError', () => {
    assert.throws(() => loadNativeFrom(path.join(tmp.dir, 'missing.node')), { name: 'BackendUnavailableError', message: /not found/ });
  });

  it('reports a broken addon as BackendUnavailableError', () => {
    const file = path.join(tmp.dir, 'broken.node');
    writeFileSync(file, 'not a shared library');
    assert.throws(() => loadNativeFrom(file), (err: unknown) => err instanceof BackendUnavailableError && /cannot load/.test(err.message));
  });

  it('looks where PIXELLLM_NATIVE says', () => {
    const saved = process.env.PIXELLLM_NATIVE;
    process.env.PIXELLLM_NATIVE = '/somewhere/pixelllm.node';
    try {
      assert.equal(addonPath(), '/somewhere/pixelllm.node');
    } finally {
      if (saved === undefined) delete process.env.PIXELLLM_NATIVE;
      else process.env.PIXELLLM_NATIVE = saved;
    }
  });
});
