"""The demo tokenizer: a small BERT-style WordPiece vocabulary covering every word the scene grammar produces.

Layout (Hugging Face `tokenizers` JSON, loads unchanged in the npm package `@huggingface/tokenizers`, which implements
BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing and the WordPiece decoder):
  ids 0..4: [PAD] [UNK] [CLS] [SEP] [MASK]   ([CLS] = bos, [SEP] = eos, as the official BERT head: 101/102 there)
  then punctuation, then every grammar word (sorted), then single characters a-z 0-9 and their "##" continuations
  (so any lower-case ASCII word still encodes without [UNK]).
Token conventions follow the official io/ops.py (dmvr BertTokenizer `string_tensor_to_indices`):
  caption / target text: [bos] + tokens + [eos]                (prepend_bos=True, append_eos=True)
  context (prompt) text: tokens + [eos], no bos                 (AddPromptTokens / use_text_as_context with
                                                                 append_context_eos=True; refer = "where is " + expr)
The official code silently truncates over-long sequences (dropping the eos); here that raises instead.
"""
from __future__ import annotations

import functools
import json

from . import scenes

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
PUNCT = (".", ",", ":", "?", "!", "'", "-")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def scene_words() -> list[str]:
    """Every word the scene grammar (scenes.py) and the task prompts can produce, sorted."""
    texts = [*scenes.SHAPES, *scenes.COLOURS, *scenes.SIZES, *scenes.TEXTURES, "light", "dark", "the", "a", "an",
             "and", "background", "is", *scenes.OPENERS, *scenes.OPENERS2, *scenes.RELATIONS, *scenes.POSITIONS,
             *scenes.PLACES, scenes.REFER_PREFIX, scenes.NARRATIVE_PROMPT, scenes.REGION_PROMPT]
    words = set()
    for t in texts:
        for w in t.replace(":", " ").replace(".", " ").split():
            words.add(w)
    return sorted(words)


def vocab() -> dict[str, int]:
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    order = list(SPECIALS) + list(PUNCT)
    for w in scene_words() + chars + ["##" + c for c in chars]:
        if w not in order:
            order.append(w)
    return {w: i for i, w in enumerate(order)}


def build_tokenizer_json() -> str:
    """The tokenizer.json text (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    v = vocab()
    tok = Tokenizer(models.WordPiece(vocab=v, unk_token=UNK, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, v[CLS]), (SEP, v[SEP])])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(list(SPECIALS))
    return json.dumps(json.loads(tok.to_str()), indent=1, ensure_ascii=False) + "\n"


@functools.lru_cache(maxsize=1)
def load():
    """The demo tokenizer as a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(build_tokenizer_json())
    for name, want in ((PAD, PAD_ID), (UNK, UNK_ID), (CLS, BOS_ID), (SEP, EOS_ID)):
        if tok.token_to_id(name) != want:
            raise RuntimeError(f"tokenizer: {name} has id {tok.token_to_id(name)}, expected {want}")
    return tok


def vocab_size() -> int:
    return load().get_vocab_size()


def _ids(text: str) -> list[int]:
    return load().encode(text, add_special_tokens=False).ids


def _fit(ids: list[int], max_len: int | None, what: str, text: str) -> list[int]:
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"{what} needs {len(ids)} tokens > max {max_len}: {text!r}")
    return ids


def encode_caption(text: str, max_len: int | None = None) -> list[int]:
    """[bos] + tokens + [eos] (the official text_tokens of every task)."""
    return _fit([BOS_ID] + _ids(text) + [EOS_ID], max_len, "caption", text)


def encode_context(text: str, max_len: int | None = None) -> list[int]:
    """tokens + [eos], no bos (official context_tokens with append_eos=True)."""
    return _fit(_ids(text) + [EOS_ID], max_len, "context", text)


def refer_context(expression: str, max_len: int | None = None) -> list[int]:
    """Context for referring: 'where is <expression>' + [eos] (official context_prefix 'where is ')."""
    return encode_context(f"{scenes.REFER_PREFIX} {expression}", max_len)


def decode(ids) -> str:
    """Text of token ids, stopping at the first eos and skipping pad/bos."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return load().decode(out, skip_special_tokens=True)


def check_round_trip(texts) -> None:
    """Raises if any text does not survive encode -> decode exactly, or hits [UNK]."""
    for t in texts:
        ids = encode_caption(t)
        if UNK_ID in ids:
            raise ValueError(f"[UNK] in {t!r}: {load().encode(t).tokens}")
        back = decode(ids)
        if back != t:
            raise ValueError(f"round trip changed {t!r} -> {back!r}")
