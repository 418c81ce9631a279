import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  AbortedError,
  ERROR_CODES,
  InternalError,
  InvalidBoxError,
  PixelLLMError,
  errorClassFor,
  fromNative,
  makeError,
  mapNative,
} from '../lib';
import { ROOT } from './helpers/paths';

describe('errors', () => {
  it('has one subclass per code, named after it', () => {
    for (const code of ERROR_CODES) {
      const err = makeError(code, 'message');
      assert.ok(err instanceof PixelLLMError);
      assert.ok(err instanceof errorClassFor(code));
      assert.equal(err.code, code);
      assert.equal(err.message, 'message');
      const camel = code.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
      assert.equal(err.name, `${camel}Error`);
    }
  });

  it('mirrors the native codes (native/core/error.cc)', function () {
    const file = path.join(ROOT, 'native', 'core', 'error.cc');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      this.skip();
    }
    const native = [...text!.matchAll(/return "([A-Z_]+)";/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(native)].sort(), [...ERROR_CODES].sort());
  });

  it('converts native errors (Error + code) to the subclass, keeping the cause', () => {
    const raw = Object.assign(new Error('box is outside'), { code: 'INVALID_BOX' });
    const err = fromNative(raw);
    assert.ok(err instanceof InvalidBoxError);
    assert.equal(err.message, 'box is outside');
    assert.equal(err.cause, raw);
  });

  it('passes PixelLLMErrors through and turns unknown errors into InternalError', () => {
    const e = new AbortedError('stop');
    assert.equal(fromNative(e), e);
    assert.ok(fromNative(new TypeError('x')) instanceof InternalError);
    assert.ok(fromNative(Object.assign(new Error('x'), { code: 'ENOENT' })) instanceof InternalError);
    assert.ok(fromNative('a string') instanceof InternalError);
  });

  it('mapNative converts sync throws and rejections', async () => {
    await assert.rejects(mapNative(() => { throw Object.assign(new Error('gone'), { code: 'DISPOSED' }); }), { code: 'DISPOSED', name: 'DisposedError' });
    await assert.rejects(mapNative(async () => Promise.reject(Object.assign(new Error('big'), { code: 'LIMIT_EXCEEDED' }))), { code: 'LIMIT_EXCEEDED' });
    assert.equal(await mapNative(() => 3), 3);
  });
});
