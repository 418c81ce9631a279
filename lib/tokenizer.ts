/**
 * The model's text tokenizer: a Hugging Face tokenizer.json (BERT WordPiece for the GIT head, SentencePiece
 * Unigram for T5) run by @huggingface/tokenizers (pure JS). Also builds the token sequences of the official
 * input pipeline (scenic projects/pixel_llm io/ops.py) and decodes generated tokens incrementally for streaming.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { InvalidTextError, ModelFormatError, ModelNotFoundError, TokenizerMismatchError } from './errors';

/** The official referring prompt prefix (configs/*_ref.py: context_prefix). */
export const CONTEXT_PREFIX = 'where is ';

export interface SpecialIds {
  vocabSize: number;
  bosTokenId: number;
  eosTokenId: number;
}

export class TextTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    readonly source: string,
    private readonly cleanUp: boolean,
  ) {}

  /**
   * Parses a tokenizer.json object (and an optional tokenizer_config.json object). decode() equals the
   * Hugging Face `tokenizers` library's Tokenizer.decode; when tokenizer_config.json sets
   * clean_up_tokenization_spaces, the spaces before punctuation are also removed, as `transformers` does.
   */
  static fromJSON(json: unknown, config: { clean_up_tokenization_spaces?: boolean } = {}, source = '<memory>'): TextTokenizer {
    if (typeof json !== 'object' || json === null || !('model' in json)) {
      throw new ModelFormatError(`${source}: not a Hugging Face tokenizer.json (no "model")`);
    }
    try {
      return new TextTokenizer(new Tokenizer(json, config), source, config.clean_up_tokenization_spaces === true);
    } catch (err) {
      throw new ModelFormatError(`${source}: cannot build the tokenizer: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Reads `file` (a tokenizer.json) or `<dir>/tokenizer.json`, with tokenizer_config.json beside it if present. */
  static async fromFile(file: string): Promise<TextTokenizer> {
    const target = file.endsWith('.json') ? file : path.join(file, 'tokenizer.json');
    let text: string;
    try {
      text = await readFile(target, 'utf8');
    } catch (err) {
      throw new ModelNotFoundError(`cannot read tokenizer ${target}: ${(err as Error).message}`, { cause: err });
    }
    let config: { clean_up_tokenization_spaces?: boolean } = {};
    try {
      config = JSON.parse(await readFile(path.join(path.dirname(target), 'tokenizer_config.json'), 'utf8')) as typeof config;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ModelFormatError(`bad tokenizer_config.json beside ${target}: ${(err as Error).message}`, { cause: err });
      }
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new ModelFormatError(`${target} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    return TextTokenizer.fromJSON(json, config, target);
  }

  /** Number of ids, added tokens included. */
  get vocabSize(): number {
    return this.tok.get_vocab(true).size;
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Token ids of `text`, without special tokens. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new InvalidTextError('text must be a string');
    // A lone surrogate is not text: refuse it instead of letting the UTF-8 conversion turn it into U+FFFD.
    const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.exec(text);
    if (lone) throw new InvalidTextError(`text has a lone UTF-16 surrogate at index ${lone.index}`);
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** Text of `ids`; special tokens are dropped unless skipSpecial is false. */
  decode(ids: ArrayLike<number>, { skipSpecial = true }: { skipSpecial?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tok.decode(Array.from(ids), { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: this.cleanUp });
  }

  /** A decoder that turns tokens, one at a time, into the text each adds. */
  stream(): TokenTextStream {
    return new TokenTextStream(this);
  }

  /** Throws TokenizerMismatchError when this tokenizer cannot be the model's (ids out of range). */
  checkModel(ids: SpecialIds): void {
    const size = this.vocabSize;
    if (size > ids.vocabSize) {
      throw new TokenizerMismatchError(`${this.source} has ${size} tokens, more than the model's vocabulary (${ids.vocabSize})`);
    }
    for (const [name, id] of [['bos', ids.bosTokenId], ['eos', ids.eosTokenId]] as const) {
      if (this.idToToken(id) === undefined) {
        throw new TokenizerMismatchError(`${this.source} has no token for the model's ${name} id ${id}`);
      }
    }
  }

  /** Context tokens of a task prompt (official AddPromptTokens with append_eos): tokenize(prompt) + [eos]. */
  promptTokens(prompt: string, ids: SpecialIds): number[] {
    if (typeof prompt !== 'string' || prompt.trim() === '') throw new InvalidTextError('a prompt must be a non-empty string');
    return [...this.encode(prompt), ids.eosTokenId];
  }

  /**
   * Token sequences for a referring expression, as the official input pipeline builds them:
   * context = tokenize("where is " + expression) + [eos] (no bos), text = [bos] + tokenize(expression) + [eos].
   * Throws InvalidTextError for an empty expression or one without tokens; the caller checks the lengths.
   */
  referTokens(expression: string, ids: SpecialIds): { context: number[]; text: number[] } {
    if (typeof expression !== 'string' || expression.trim() === '') {
      throw new InvalidTextError('the referring expression must be a non-empty string');
    }
    const words = this.encode(expression);
    if (words.length === 0) throw new InvalidTextError(`the expression ${JSON.stringify(expression)} has no tokens`);
    return {
      context: [...this.encode(CONTEXT_PREFIX + expression), ids.eosTokenId],
      text: [ids.bosTokenId, ...words, ids.eosTokenId],
    };
  }
}

/**
 * Incremental detokenizer: push(id) returns the text that id adds, such that the pieces concatenate to
 * decode(all ids). WordPiece continuations ("##s") add no space; special tokens add ''.
 *
 * Each push decodes a window of the last WINDOW + 1 .. 2 * WINDOW ids instead of every id so far (decoding the
 * whole text made streaming quadratic: ~23 us per token at 40 tokens on the 2-core VM, on the event loop), and
 * replaces the window's previous decode at the end of the text with the new one. This equals decoding every id as
 * long as a new id changes the decode of at most the WINDOW ids before it: the Hugging Face decoders do (WordPiece
 * and Metaspace spaces, ByteLevel's bytes of one character, the clean-up of " ." / " 's" reach one id back). A
 * window starts only where its decode ends the text (not on an id whose decode depends on its left neighbour);
 * should the text still not end with the window's previous decode, the push decodes every id instead.
 * test/tokenizer.test.ts compares the pieces with the decode of every prefix.
 */
export class TokenTextStream {
  private static readonly WINDOW = 4;
  private readonly ids: number[] = [];
  private text = '';
  private start = 0;       // the window: ids[start..]
  private windowText = ''; // decode(ids[start..]) as of the last push; `text` ends with it

  constructor(private readonly tokenizer: TextTokenizer) {}

  push(id: number): string {
    this.ids.push(id);
    const n = this.ids.length, W = TokenTextStream.WINDOW;
    if (n - 1 - this.start >= 2 * W) {
      // Move the window on, keeping W ids of left context: to the first of 3 starts whose decode ends the text
      // (a start on a "##" continuation decodes differently alone); none: the window grows by one id.
      for (let start = n - 1 - W; start > n - 4 - W && start > this.start; --start) {
        const text = this.tokenizer.decode(this.ids.slice(start, n - 1));
        if (this.text.endsWith(text)) {
          this.start = start;
          this.windowText = text;
          break;
        }
      }
    }
    const window = this.tokenizer.decode(this.ids.slice(this.start));
    const fast = this.text.endsWith(this.windowText);
    const keep = fast ? this.text.length - this.windowText.length : 0;  // characters both texts share for sure
    const next = fast ? this.text.slice(0, keep) + window : this.tokenizer.decode(this.ids);
    this.windowText = window;
    // Normally decode(ids[..i]) extends decode(ids[..i-1]). Should a decoder rewrite earlier text, the piece is
    // the tail from the first changed character (the pieces then overlap; `value` stays exact).
    let common = keep;
    while (common < this.text.length && common < next.length && this.text[common] === next[common]) common++;
    this.text = next;
    return next.slice(common);
  }

  /** The text so far. */
  get value(): string {
    return this.text;
  }
}
