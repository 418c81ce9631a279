import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidTextError, ModelFormatError, ModelNotFoundError, TextTokenizer, TokenizerMismatchError } from '../lib';
import { FIXTURES } from './helpers/paths';

// Made by test/fixtures/tokenizer/make_fixture.py with the Hugging Face `tokenizers` library.
const DIR = path.join(FIXTURES, 'tokenizer');
interface Case {
  text: string;
  ids: number[];
  tokens: string[];
  ids_with_special: number[];
  decoded: string;
  decoded_with_special: string;
  prefix_decodes: string[];
}
const expected: { vocab_size: number; cls_id: number; sep_id: number; cases: Case[] } = JSON.parse(
  readFileSync(path.join(DIR, 'expected.json'), 'utf8'),
);

describe('TextTokenizer (BERT WordPiece, agreement with HF tokenizers)', () => {
  let tok: TextTokenizer;
  before(async () => (tok = await TextTokenizer.fromFile(DIR)));

  it('loads tokenizer.json from a directory or a file path', async () => {
    assert.equal(tok.vocabSize, expected.vocab_size);
    const again = await TextTokenizer.fromFile(path.join(DIR, 'tokenizer.json'));
    assert.equal(again.vocabSize, expected.vocab_size);
    assert.equal(tok.tokenToId('[CLS]'), expected.cls_id);
    assert.equal(tok.idToToken(expected.sep_id), '[SEP]');
  });

  for (const c of expected.cases) {
    it(`encodes and decodes ${JSON.stringify(c.text)}`, () => {
      assert.deepEqual(tok.encode(c.text), c.ids);
      assert.deepEqual(c.ids.map((id) => tok.idToToken(id)), c.tokens);
      assert.equal(tok.decode(c.ids), c.decoded);
      assert.equal(tok.decode(c.ids_with_special, { skipSpecial: false }), c.decoded_with_special);
      assert.equal(tok.decode(c.ids_with_special), c.decoded);
    });

    it(`streams ${JSON.stringify(c.text)} token by token`, () => {
      const stream = tok.stream();
      let text = '';
      c.ids.forEach((id, i) => {
        text += stream.push(id);
        assert.equal(text, c.prefix_decodes[i]);
      });
      assert.equal(stream.value, c.decoded);
    });
  }

  // The stream decodes a window of the last ids (lib/tokenizer.ts TokenTextStream): its pieces must still add up to
  // the decode of every prefix, for long random sequences of words, punctuation, apostrophes, "##" continuations
  // and special tokens, with and without the transformers clean-up of spaces.
  for (const cleanUp of [false, true]) {
    it(`streams long random sequences exactly as whole decodes (clean-up ${cleanUp})`, () => {
      const t = TextTokenizer.fromJSON(JSON.parse(readFileSync(path.join(DIR, 'tokenizer.json'), 'utf8')), {
        clean_up_tokenization_spaces: cleanUp,
      });
      let seed = 12345;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const apostrophe = t.tokenToId("'")!, s = t.tokenToId('s')!, dot = t.tokenToId('.')!;
      for (let trial = 0; trial < 40; ++trial) {
        const stream = t.stream();
        const ids: number[] = [];
        for (let i = 0; i < 60; ++i) {
          const r = rand();
          // Biased towards the ids whose clean-up reaches back (" ' s" -> "'s", " ." -> ".").
          const id = r < 0.1 ? apostrophe : r < 0.2 ? s : r < 0.25 ? dot : Math.floor(rand() * expected.vocab_size);
          ids.push(id);
          const before = stream.value;
          const piece = stream.push(id);
          const want = t.decode(ids);
          const where = `trial ${trial}, ids ${JSON.stringify(ids)}`;
          assert.equal(stream.value, want, where);
          // The piece is the new tail: what follows the text both decodes share (all of it without clean-up).
          assert.ok(want.endsWith(piece) && before.startsWith(want.slice(0, want.length - piece.length)), where);
          if (!cleanUp) assert.equal(before + piece, want, where);
        }
      }
    });
  }

  it('gives special tokens no text when streaming', () => {
    const stream = tok.stream();
    assert.equal(stream.push(expected.cls_id), '');
    assert.equal(stream.push(tok.tokenToId('red')!), 'red');
    assert.equal(stream.push(tok.tokenToId('##ish')!), 'ish');
    assert.equal(stream.push(expected.sep_id), '');
  });

  it('builds the official referring sequences', () => {
    const ids = { vocabSize: 100, bosTokenId: expected.cls_id, eosTokenId: expected.sep_id };
    const { context, text } = tok.referTokens('the red circle', ids);
    assert.deepEqual(context, [...tok.encode('where is the red circle'), expected.sep_id]);
    assert.deepEqual(text, [expected.cls_id, ...tok.encode('the red circle'), expected.sep_id]);
    assert.throws(() => tok.referTokens('  ', ids), InvalidTextError);
    assert.deepEqual(tok.promptTokens('an object of', ids), [...tok.encode('an object of'), expected.sep_id]);
    assert.throws(() => tok.promptTokens('', ids), InvalidTextError);
  });

  it('checks the tokenizer against the model', () => {
    tok.checkModel({ vocabSize: expected.vocab_size, bosTokenId: expected.cls_id, eosTokenId: expected.sep_id });
    assert.throws(() => tok.checkModel({ vocabSize: 10, bosTokenId: 2, eosTokenId: 3 }), TokenizerMismatchError);
    assert.throws(() => tok.checkModel({ vocabSize: 1000, bosTokenId: 2, eosTokenId: 999 }), TokenizerMismatchError);
  });

  it('reports missing and malformed files with typed errors', async () => {
    await assert.rejects(TextTokenizer.fromFile(path.join(DIR, 'nope')), ModelNotFoundError);
    await assert.rejects(TextTokenizer.fromFile(path.join(DIR, 'expected.json')), ModelFormatError);
    assert.throws(() => TextTokenizer.fromJSON('x'), ModelFormatError);
  });
});
