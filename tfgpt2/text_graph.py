"""In-graph GPT-2 tokenizer: string tensor -> ids and ids -> string tensor, inside tf.function/SavedModel.

keras-hub's `BytePairTokenizer` does the BPE merges (TF hash tables + a while loop);
its GPT-2 pre-tokenizer emulates the regex's `\\s+(?!\\S)` look-ahead with a marker and
splits " 's", "  x" and Unicode spaces differently from GPT-2 (229 of 5,127 corpus
strings). `pretokenize` below reproduces the GPT-2 regex exactly with RE2 (no look-ahead):

1. split each text at `<|endoftext|>` (tiktoken encodes the chunks independently);
2. split chunks into whitespace runs and non-space segments;
3. a run followed by a segment gives its last char away: a ' ' joins the segment
   (" ?\\p{L}+" etc.), any other space stands alone; a run at the end stays whole;
4. split segments with the GPT-2 regex minus its whitespace alternatives.

Graph ops beyond core TF: `RegexSplitWithOffsets` (tensorflow-text). TF Serving must
link TF Text for a signature that uses this tokenizer.
"""

import json
import os

import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.tokenizers import BytePairTokenizer

from tfgpt2.tokenizer import ASSETS, EOT

# Unicode White_Space, which `\s` means in tiktoken's (Rust) regex; RE2's `\s` is ASCII only.
WS = r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
SPECIAL = r"<\|endoftext\|>"
SEGMENT = rf"{SPECIAL}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?\p{{N}}+| ?[^{WS}\p{{L}}\p{{N}}]+|[{WS}]+"
REQUIRED_OPS = ("RegexSplitWithOffsets",)


def pretokenize(texts):
    """GPT-2's regex split of a 1-D string tensor: ragged (N, None) pieces.

    tf_text.regex_split stops at NUL bytes, so it splits a copy with NUL -> \x01 (same
    class, same length) and the pieces are cut from the original by their byte lengths.
    """
    pieces = _split(tf.strings.regex_replace(texts, r"\x00", "\x01"))
    lengths = tf.strings.length(pieces.flat_values)  # bytes
    starts = tf.cumsum(lengths, exclusive=True)
    rows = pieces.value_rowids()
    starts -= tf.gather(tf.gather(tf.concat([starts, [0]], 0), pieces.row_splits[:-1]), rows)
    flat = tf.strings.substr(tf.gather(texts, rows), starts, lengths)
    return pieces.with_flat_values(flat)


def _split(texts):
    chunks = tf_text.regex_split(texts, SPECIAL, SPECIAL)  # (N, C)
    segs = tf_text.regex_split(chunks.flat_values, f"[{WS}]+", f"[{WS}]+")  # (NC, S)
    flat = segs.flat_values  # (M,) whitespace runs and non-space segments
    rows = segs.value_rowids()
    has_next = tf.concat([tf.equal(rows[1:], rows[:-1]), [False]], 0)  # (M,) next segment in same chunk
    is_ws = tf.strings.regex_full_match(flat, f"[{WS}]+")
    give = tf.logical_and(is_ws, has_next)  # runs that give their last char away
    head = tf.strings.regex_replace(flat, f"[{WS}]$", "")  # run minus its last char
    last = tf.strings.regex_replace(flat, f"^[{WS}]*([{WS}])$", r"\1")  # last char of a run
    to_next = tf.where(tf.logical_and(give, tf.equal(last, " ")), " ", "")  # (M,)
    prefix = tf.concat([[""], to_next[:-1]], 0)  # what each segment receives from its left run
    first = tf.where(give, head, tf.strings.join([prefix, flat]))
    second = tf.where(tf.logical_and(give, tf.not_equal(last, " ")), last, "")
    parts = tf.reshape(tf.stack([first, second], axis=1), [-1])  # (2M,)
    pieces = tf_text.regex_split(parts, SEGMENT, SEGMENT)  # (2M, P)
    per_chunk = tf.RaggedTensor.from_row_splits(pieces, segs.row_splits * 2)  # (NC, 2S, P)
    per_text = tf.RaggedTensor.from_row_splits(per_chunk.merge_dims(1, 2), chunks.row_splits)
    return per_text.merge_dims(1, 2)  # (N, pieces)


class GPT2GraphTokenizer(BytePairTokenizer):
    """GPT-2 tokenizer made of TF ops: `encode(strings) -> ragged ids`, `decode(ids) -> strings`.

    Matches `GPT2Tokenizer` (tiktoken) id for id, inside `tf.function` and after SavedModel
    save/load. Defaults to the bundled GPT-2 vocabulary.

    Example:
    >>> import tensorflow as tf
    >>> from tfgpt2.text_graph import GPT2GraphTokenizer
    >>> tok = GPT2GraphTokenizer()
    >>> tok.encode(tf.constant(["Hello world", "it 's"])).to_list()
    [[15496, 995], [270, 705, 82]]
    >>> tok.decode(tf.constant([[15496, 995]])).numpy().tolist()
    [b'Hello world']
    """

    def __init__(self, vocabulary=None, merges=None, **kwargs):
        if vocabulary is None:
            with open(os.path.join(ASSETS, "vocab.json"), encoding="utf-8") as f:
                vocabulary = json.load(f)
        if merges is None:
            with open(os.path.join(ASSETS, "merges.txt"), encoding="utf-8") as f:
                merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
        kwargs.setdefault("unsplittable_tokens", [EOT])
        super().__init__(vocabulary, merges, _allow_python_workflow=False, **kwargs)

    def encode(self, texts):
        """1-D string tensor -> ragged int32 ids (N, None)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.add_prefix_space:
            texts = tf.strings.join([" ", texts])
        pieces = pretokenize(texts)
        flat = pieces.flat_values
        cached = self.cache.lookup(flat)
        unseen = tf.logical_and(tf.equal(cached, ""), tf.not_equal(flat, ""))

        def merge_unseen():
            self._bpe_merge_and_update_cache_tf(tf.boolean_mask(flat, unseen))
            return self.cache.lookup(flat)

        merged = tf.cond(tf.reduce_any(unseen), merge_unseen, lambda: cached)  # "tok tok" per piece
        ids = self.token_to_id_map.lookup(tf.strings.split(merged, sep=" "))  # (pieces, tokens)
        ids = tf.RaggedTensor.from_row_splits(ids.flat_values, tf.gather(ids.row_splits, pieces.row_splits))
        return tf.cast(ids, tf.int32)

    def decode(self, ids):
        """int ids (N, T) dense or ragged -> 1-D string tensor of UTF-8 bytes."""
        ids = tf.cast(ids, tf.int32)
        tokens = self.id_to_token_map.lookup(ids)  # byte-level unicode tokens
        text = tf.strings.reduce_join(tokens, axis=-1)
        chars = tf.strings.unicode_split(text, "UTF-8")
        return tf.strings.reduce_join(self.unicode2byte.lookup(chars), axis=-1)
