/**
 * Bad-input matrix, model directories: missing files, unreadable / malformed config.json, absurd and inconsistent
 * sizes, broken model.safetensors (truncated, header length past EOF, bad JSON, duplicate keys, overlapping or
 * out-of-range offsets, wrong dtype, shapes that disagree with config.json, missing tensors, deep nesting) and
 * tokenizers that disagree with the model. Each variant is a scratch copy of the golden model dir with one thing
 * broken; loading it fails with a typed PixelLLMError and a stable code, and the already-loaded golden model keeps
 * answering the golden caption afterwards.
 */
import * as assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PixelLLM } from '../../lib';
import type { ErrorCode } from '../../lib';
import { expectCode, loadGolden, stillAnswers } from './bad-input-helpers';
import type { Golden } from './bad-input-helpers';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Header = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Json>;

interface Variant {
  config?: (c: Json) => Json | string;          // edit config.json (a string is written as it is)
  header?: (h: Header) => Header | string;       // edit the safetensors header
  safetensors?: (file: Buffer) => Buffer;        // replace model.safetensors bytes outright
  tokenizer?: (t: Json) => Json | string;
  remove?: string[];                             // files to leave out
  extra?: Record<string, string>;                // extra files
}

describe('bad input: model directories', function () {
  this.timeout(120_000);
  let g: Golden;
  let tmp: string;
  let config: Json;
  let tokenizer: Json;
  let header: Header;
  let data: Buffer;
  let n = 0;

  before(async function () {
    g = await loadGolden(this);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pixelllm-bad-model-'));
    config = JSON.parse(readFileSync(path.join(g.dir, 'config.json'), 'utf8')) as Json;
    tokenizer = JSON.parse(readFileSync(path.join(g.dir, 'tokenizer.json'), 'utf8')) as Json;
    const st = readFileSync(path.join(g.dir, 'model.safetensors'));
    const len = Number(st.readBigUInt64LE(0));
    header = JSON.parse(st.subarray(8, 8 + len).toString('utf8')) as Header;
    data = st.subarray(8 + len);
  });
  after(() => {
    g?.model.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async function () {
    if (g) await stillAnswers(g);
  });

  const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
  const asText = (v: Json | string) => (typeof v === 'string' ? v : JSON.stringify(v));
  function safetensorsBytes(h: Header | string): Buffer {
    const text = Buffer.from(asText(h as Json | string), 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(text.length));
    return Buffer.concat([len, text, data]);
  }
  /** A scratch model dir: the golden one with `v` applied (unchanged files are symlinks). */
  function variant(v: Variant): string {
    const dir = path.join(tmp, `m${n++}`);
    mkdirSync(dir);
    const files: Record<string, () => Buffer | string | null> = {
      'config.json': () => (v.config ? asText(v.config(clone(config))) : null),
      'tokenizer.json': () => (v.tokenizer ? asText(v.tokenizer(clone(tokenizer))) : null),
      'model.safetensors': () => {
        if (v.safetensors) return v.safetensors(readFileSync(path.join(g.dir, 'model.safetensors')));
        return v.header ? safetensorsBytes(v.header(clone(header))) : null;
      },
    };
    for (const [name, make] of Object.entries(files)) {
      if (v.remove?.includes(name)) continue;
      const content = make();
      if (content === null) symlinkSync(path.join(g.dir, name), path.join(dir, name));
      else writeFileSync(path.join(dir, name), content);
    }
    for (const [name, content] of Object.entries(v.extra ?? {})) writeFileSync(path.join(dir, name), content);
    return dir;
  }
  const firstTensor = (h: Header) => Object.keys(h).filter((k) => k !== '__metadata__').sort()[0];
  const tensor = (h: Header, name: string) => h[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  const matrixName = (h: Header) => Object.keys(h).find((k) => k.startsWith('git_decoder.') && tensor(h, k).shape?.length === 2 && tensor(h, k).shape[0] !== tensor(h, k).shape[1])!;

  const cases: Array<[string, ErrorCode, Variant | (() => string)]> = [
    // files
    ['a directory that does not exist', 'MODEL_NOT_FOUND', () => path.join(tmp, 'nope')],
    ['a file instead of a directory', 'MODEL_NOT_FOUND', () => path.join(g.dir, 'config.json')],
    ['no config.json', 'MODEL_NOT_FOUND', { remove: ['config.json'] }],
    ['no model.safetensors', 'MODEL_NOT_FOUND', { remove: ['model.safetensors'] }],
    ['no tokenizer.json', 'MODEL_NOT_FOUND', { remove: ['tokenizer.json'] }],
    // config.json
    ['config.json is not JSON', 'MODEL_FORMAT', { config: () => '{"format": "pixelllm", ' }],
    ['config.json is an array', 'MODEL_FORMAT', { config: () => '[1, 2, 3]' }],
    ['config.json without the git_decoder section', 'MODEL_FORMAT', { config: (c) => { delete c.git_decoder; return c; } }],
    ['config.json with an unknown text_decoder', 'CONFIG_MISMATCH', { config: (c) => ({ ...c, text_decoder: 'gpt2' }) }],
    ['config.json with a size given as a string', 'MODEL_FORMAT', { config: (c) => { c.git_decoder.hidden_size = '64'; return c; } }],
    ['config.json image_size 1e9', 'LIMIT_EXCEEDED', { config: (c) => ({ ...c, image_size: 1e9 }) }],
    ['config.json vocab_size 1e12', 'LIMIT_EXCEEDED', { config: (c) => ({ ...c, vocab_size: 1e12 }) }],
    ['config.json negative hidden_size', 'LIMIT_EXCEEDED', { config: (c) => { c.git_decoder.hidden_size = -64; return c; } }],
    ['config.json max_caption_length 1e9', 'LIMIT_EXCEEDED', { config: (c) => ({ ...c, max_caption_length: 1e9 }) }],
    ['config.json hidden_size that disagrees with the weights', 'CONFIG_MISMATCH', { config: (c) => { c.git_decoder.hidden_size *= 2; return c; } }],
    ['config.json with one layer more than the weights', 'MODEL_FORMAT', { config: (c) => { c.git_decoder.num_layers += 1; return c; } }],
    ['config.json eos_token_id outside the vocabulary', 'LIMIT_EXCEEDED', { config: (c) => ({ ...c, eos_token_id: c.vocab_size + 5 }) }],
    // model.safetensors
    ['an empty model.safetensors', 'MODEL_FORMAT', { safetensors: () => Buffer.alloc(0) }],
    ['a 4-byte model.safetensors', 'MODEL_FORMAT', { safetensors: () => Buffer.from([1, 2, 3, 4]) }],
    ['model.safetensors truncated to half', 'MODEL_FORMAT', { safetensors: (f) => f.subarray(0, f.length >> 1) }],
    ['model.safetensors cut inside the header', 'MODEL_FORMAT', { safetensors: (f) => f.subarray(0, 100) }],
    ['header length past the end of the file', 'MODEL_FORMAT', { safetensors: (f) => { const b = Buffer.from(f.subarray(0, 1000)); b.writeBigUInt64LE(5000n); return b; } }],
    ['header length 2^63', 'MODEL_FORMAT', { safetensors: (f) => { const b = Buffer.from(f.subarray(0, 1000)); b.writeBigUInt64LE(1n << 63n); return b; } }],
    ['header that is not JSON', 'MODEL_FORMAT', { header: () => '{"a": {"dtype": ' }],
    ['header with duplicate tensor names', 'MODEL_FORMAT', { header: (h) => { const k = firstTensor(h); const s = JSON.stringify(h); return `{${JSON.stringify(k)}:${JSON.stringify(h[k])},${s.slice(1)}`; } }],
    ['overlapping data offsets', 'MODEL_FORMAT', { header: (h) => {
      const names = Object.keys(h).filter((k) => k !== '__metadata__' && tensor(h, k).data_offsets[1] > tensor(h, k).data_offsets[0]);
      const [a, b] = names.sort((x, y) => tensor(h, x).data_offsets[0] - tensor(h, y).data_offsets[0]);
      const span = tensor(h, b).data_offsets[1] - tensor(h, b).data_offsets[0];
      tensor(h, b).data_offsets = [tensor(h, a).data_offsets[0], tensor(h, a).data_offsets[0] + span];
      return h;
    } }],
    ['data offsets past the data section', 'MODEL_FORMAT', { header: (h) => { const t = tensor(h, firstTensor(h)); const span = t.data_offsets[1] - t.data_offsets[0]; t.data_offsets = [data.length, data.length + span]; return h; } }],
    ['data offsets with begin > end', 'MODEL_FORMAT', { header: (h) => { const t = tensor(h, firstTensor(h)); t.data_offsets = [t.data_offsets[1], t.data_offsets[0]]; return h; } }],
    ['negative data offsets', 'MODEL_FORMAT', { header: (h) => { tensor(h, firstTensor(h)).data_offsets = [-4, 0]; return h; } }],
    ['an unsupported dtype (I64)', 'MODEL_FORMAT', { header: (h) => { tensor(h, firstTensor(h)).dtype = 'I64'; return h; } }],
    ['a dtype whose size disagrees with the offsets (F16 over F32 bytes)', 'MODEL_FORMAT', { header: (h) => { tensor(h, firstTensor(h)).dtype = 'F16'; return h; } }],
    ['a shape that disagrees with config.json (same bytes)', 'CONFIG_MISMATCH', { header: (h) => { const t = tensor(h, matrixName(h)); t.shape = [...t.shape].reverse(); return h; } }],
    ['a shape with a huge dimension', 'MODEL_FORMAT', { header: (h) => { tensor(h, firstTensor(h)).shape = [2 ** 53, 2 ** 53]; return h; } }],
    ['a missing tensor', 'MODEL_FORMAT', { header: (h) => { delete h[matrixName(h)]; return h; } }],
    ['an unused tensor under a component prefix', 'CONFIG_MISMATCH', { header: (h) => { h['sam_image_encoder.extra.weight'] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }; return h; } }],
    ['an unknown field in a tensor entry', 'MODEL_FORMAT', { header: (h) => { (h[firstTensor(h)] as Json).offsets = [0, 0]; return h; } }],
    ['a header nested 100000 levels deep', 'MODEL_FORMAT', { header: () => `{"a":{"dtype":"F32","shape":${'['.repeat(100000)}${']'.repeat(100000)},"data_offsets":[0,0]}}` }],
    // tokenizer.json
    ['tokenizer.json is not JSON', 'MODEL_FORMAT', { tokenizer: () => '{"model": ' }],
    ['a tokenizer with more tokens than the vocabulary', 'TOKENIZER_MISMATCH', { tokenizer: (t) => {
      for (let i = 0; i < 50; i++) t.model.vocab[`extra${i}`] = 1000 + i;
      return t;
    } }],
    ['a tokenizer without the eos token id', 'TOKENIZER_MISMATCH', { tokenizer: (t) => {
      const eos = config.eos_token_id as number;
      for (const [k, v] of Object.entries(t.model.vocab)) if (v === eos) delete t.model.vocab[k];
      t.added_tokens = (t.added_tokens as Json[]).filter((a) => a.id !== eos);
      return t;
    } }],
    ['a broken tokenizer_config.json', 'MODEL_FORMAT', { extra: { 'tokenizer_config.json': '{ nope' } }],
  ];

  for (const [name, code, v] of cases) {
    it(`${name} -> ${code}`, async () => {
      const dir = typeof v === 'function' ? v() : variant(v);
      await expectCode(code, () => PixelLLM.load(dir, { backend: 'cpu', threads: 1 }));
    });
  }

  it('an untouched copy of the directory still loads and answers (the variants are sound)', async () => {
    const m = await PixelLLM.load(variant({ header: (h) => h }), { backend: 'cpu', threads: 1 });
    try {
      const r = await m.caption({ data: g.rgb, width: g.exp.width, height: g.exp.height, channels: 3 }).result;
      assert.deepEqual(r.tokens, g.exp.caption.tokens);
    } finally {
      m.dispose();
    }
  });
});
