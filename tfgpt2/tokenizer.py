"""GPT2Tokenizer: GPT-2's exact byte-level BPE, bundled and offline.

The BPE hot path runs in tiktoken for the GPT-2 vocabulary (benchmarks/tokenizer.py
measures it against HF `tokenizers`) and in HF `tokenizers` for any other vocab.json /
merges.txt / tokenizer.json. `tfgpt2.text_graph` holds the in-graph (TF) variant.
"""

import json
import os
import shutil

import numpy as np

from tfgpt2.config import read_json
from tfgpt2.errors import CheckpointError, CheckpointNotFoundError, GPT2InputError

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
EOT = "<|endoftext|>"
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode map (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _read_json(path):
    return read_json(path, CheckpointError)


class _Tiktoken:
    """tiktoken over ranks decoded from vocab.json (exact for the GPT-2 vocabulary)."""

    def __init__(self, vocab):
        import tiktoken

        decoder = {c: b for b, c in bytes_to_unicode().items()}
        ranks = {bytes(decoder[c] for c in tok): i for tok, i in vocab.items() if tok != EOT}
        self.enc = tiktoken.Encoding("gpt2", pat_str=PATTERN, mergeable_ranks=ranks,
                                     special_tokens={EOT: vocab[EOT]})

    def encode_batch(self, texts, special):
        allowed = "all" if special else set()
        if len(texts) == 1:  # no thread pool for one string
            return [self.enc.encode(texts[0], allowed_special=allowed, disallowed_special=())]
        return self.enc.encode_batch(texts, allowed_special=allowed, disallowed_special=(), num_threads=4)

    def token_bytes(self, ids):
        return self.enc.decode_bytes(ids)


class _HFTokenizers:
    """HF `tokenizers` for other vocabularies (vocab.json + merges.txt, or tokenizer.json)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self.special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}

    def encode_batch(self, texts, special):
        if special:
            return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]
        return [self._encode_plain(t) for t in texts]

    def _encode_plain(self, text):
        """BPE of the pre-tokenized pieces, bypassing the special-token matcher."""
        ids = []
        for piece, _ in self.tok.pre_tokenizer.pre_tokenize_str(text):
            ids.extend(t.id for t in self.tok.model.tokenize(piece))
        return ids

    def token_bytes(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.tok.id_to_token(int(i))
            if tok is None:
                raise GPT2InputError(f"token id {i} is not in this vocabulary (size {self.tok.get_vocab_size()}).")
            out += tok.encode() if tok in self.special else bytes(self.byte_decoder[c] for c in tok)
        return bytes(out)


class GPT2Tokenizer:
    """GPT-2's tokenizer with the HF `GPT2Tokenizer` call surface.

    Example:
    >>> from tfgpt2 import GPT2Tokenizer
    >>> tok = GPT2Tokenizer()
    >>> tok.encode("Hello world")
    [15496, 995]
    >>> tok.decode([15496, 995])
    'Hello world'
    >>> batch = tok(["Hi", "Hello world"], padding=True, padding_side="left", return_tensors="np")
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[50256, 17250], [15496, 995]], [[0, 1], [1, 1]])
    """

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, add_prefix_space=False,
                 padding_side="right", pad_token=None, model_max_length=1024, errors="replace",
                 truncation_side="right", eos_token=EOT, bos_token=EOT, unk_token=EOT):
        if tokenizer_file is None and vocab_file is None:
            vocab_file, merges_file = os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt")
        self.vocab_file, self.merges_file, self.tokenizer_file = vocab_file, merges_file, tokenizer_file
        self.add_prefix_space = add_prefix_space
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.model_max_length = model_max_length
        self.errors = errors
        self._engine, self.vocab = self._load_engine()
        self.eos_token, self.bos_token, self.unk_token = eos_token, bos_token, unk_token
        self.pad_token = pad_token

    def _load_engine(self):
        if self.tokenizer_file is not None:
            from tokenizers import Tokenizer

            try:
                tok = Tokenizer.from_file(self.tokenizer_file)
            except Exception as e:  # tokenizers raises a bare Exception
                raise CheckpointError(f"{self.tokenizer_file} is not a tokenizers file ({e}); re-save the "
                                      "tokenizer or remove the file.") from e
            tok.no_padding()  # a saved file may carry the last call's settings; each call sets its own
            tok.no_truncation()
            return _HFTokenizers(tok), tok.get_vocab()
        vocab = _read_json(self.vocab_file)
        bundled = os.path.join(ASSETS, "merges.txt")
        if EOT in vocab and _same_file(self.merges_file, bundled) and vocab == _bundled_vocab():
            return _Tiktoken(vocab), vocab
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        try:
            tok = Tokenizer(models.BPE.from_file(self.vocab_file, self.merges_file))
        except Exception as e:  # tokenizers raises a bare Exception
            raise CheckpointError(f"{self.vocab_file} and {self.merges_file} do not fit together ({e}); "
                                  "use the pair saved with the model.") from e
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if EOT in vocab:
            from tokenizers import AddedToken

            tok.add_special_tokens([AddedToken(EOT, special=True)])
        return _HFTokenizers(tok), vocab

    # ------------------------------------------------------------ properties
    @property
    def vocab_size(self):
        return len(self.vocab)

    def __len__(self):
        return len(self.vocab)

    @property
    def eos_token_id(self):
        return self.vocab.get(self.eos_token)

    @property
    def bos_token_id(self):
        return self.vocab.get(self.bos_token)

    @property
    def unk_token_id(self):
        return self.vocab.get(self.unk_token)

    @property
    def pad_token_id(self):
        """Padding id: the pad token if set, else the eos token (GPT-2 has no pad token)."""
        return self.vocab[self.pad_token] if self.pad_token is not None else self.eos_token_id

    @pad_token_id.setter
    def pad_token_id(self, value):
        self.pad_token = None if value is None else self.convert_ids_to_tokens(int(value))

    @property
    def all_special_tokens(self):
        return sorted({t for t in (self.eos_token, self.bos_token, self.unk_token, self.pad_token) if t in self.vocab})

    @property
    def all_special_ids(self):
        return [self.vocab[t] for t in self.all_special_tokens]

    def get_vocab(self):
        return dict(self.vocab)

    def convert_tokens_to_ids(self, tokens):
        return self.vocab[tokens] if isinstance(tokens, str) else [self.vocab[t] for t in tokens]

    def convert_ids_to_tokens(self, ids):
        """Byte-level token strings (as in vocab.json) of an id or a list of ids."""
        if not hasattr(self, "_id_to_token"):
            self._id_to_token = {i: t for t, i in self.vocab.items()}
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token[int(ids)]
        return [self._id_to_token[int(i)] for i in ids]

    # ------------------------------------------------------------ encode / decode
    def encode_batch(self, texts, add_prefix_space=None, allowed_special=True):
        """Ids of each text; `allowed_special=False` encodes '<|endoftext|>' as plain text."""
        prefix = self.add_prefix_space if add_prefix_space is None else add_prefix_space
        for t in texts:
            if not isinstance(t, str):
                raise GPT2InputError(f"the tokenizer encodes str, got {type(t).__name__}; decode bytes "
                                     "with .decode('utf-8') first.")
        if prefix:
            texts = [t if t.startswith(" ") else " " + t for t in texts]
        return self._engine.encode_batch(list(texts), bool(allowed_special))

    def encode(self, text, add_prefix_space=None, allowed_special=True, truncation=False, max_length=None):
        ids = self.encode_batch([text], add_prefix_space, allowed_special)[0]
        return ids[: self._max_len(max_length)] if truncation else ids

    def decode(self, ids, skip_special_tokens=False, errors=None):
        """Text of `ids`; invalid/partial UTF-8 is replaced (errors='replace') unless told otherwise."""
        ids = np.asarray(ids).reshape(-1).tolist()
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise GPT2InputError(f"cannot decode id {bad[0]}: ids must be in [0, {self.vocab_size}).")
        return self._engine.token_bytes(ids).decode("utf-8", errors or self.errors)

    def batch_decode(self, sequences, skip_special_tokens=False, **kwargs):
        return [self.decode(s, skip_special_tokens, **kwargs) for s in np.asarray(sequences).tolist()]

    def __call__(self, text, padding=False, truncation=False, max_length=None, padding_side=None,
                 return_tensors=None, return_attention_mask=True, add_prefix_space=None,
                 allowed_special=True, add_special_tokens=True):
        """HF-style batch encoding: dict with input_ids (+ attention_mask), padded/truncated.

        GPT-2 adds no special tokens, so `add_special_tokens` changes nothing (accepted as in HF)."""
        single = isinstance(text, str)
        ids = self.encode_batch([text] if single else list(text), add_prefix_space, allowed_special)
        if truncation not in (False, None, "do_not_truncate"):
            keep, cut = self._max_len(max_length), self.truncation_side
            if cut not in ("left", "right"):
                raise GPT2InputError(f"truncation_side must be 'left' or 'right', got {cut!r}.")
            ids = [row[-keep:] if cut == "left" else row[:keep] for row in ids]
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise GPT2InputError(f"padding_side must be 'left' or 'right', got {side!r}.")
        if padding in (True, "longest", "max_length"):
            width = max(map(len, ids)) if padding != "max_length" else self._max_len(max_length)
            pads = [max(width - len(r), 0) for r in ids]
            if side == "left":
                masks = [[0] * p + [1] * len(r) for r, p in zip(ids, pads)]
                ids = [[self.pad_token_id] * p + r for r, p in zip(ids, pads)]
            else:
                masks = [[1] * len(r) + [0] * p for r, p in zip(ids, pads)]
                ids = [r + [self.pad_token_id] * p for r, p in zip(ids, pads)]
        elif padding not in (False, None, "do_not_pad"):
            raise GPT2InputError(f"padding={padding!r}: use True/'longest', 'max_length' or False.")
        else:
            masks = [[1] * len(r) for r in ids]
        out = {"input_ids": ids}
        if return_attention_mask:
            out["attention_mask"] = masks
        return _as_tensors(out, return_tensors, single)

    def _max_len(self, max_length):
        length = max_length or self.model_max_length
        if length is None or length <= 0:
            raise GPT2InputError(f"max_length must be a positive int, got {max_length!r}.")
        return length

    # ------------------------------------------------------------ files
    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        """Reads vocab.json + merges.txt, or tokenizer.json, from an HF model directory, with the settings of
        its tokenizer_config.json (pad token, padding/truncation side, model_max_length); kwargs win."""
        files = {n: os.path.join(directory, n) for n in ("vocab.json", "merges.txt", "tokenizer.json")}
        kwargs = {**_saved_settings(directory), **kwargs}
        if os.path.exists(files["vocab.json"]) and os.path.exists(files["merges.txt"]):
            return cls(files["vocab.json"], files["merges.txt"], **kwargs)
        if os.path.exists(files["tokenizer.json"]):
            return cls(tokenizer_file=files["tokenizer.json"], **kwargs)
        raise CheckpointNotFoundError(f"{directory} has neither vocab.json + merges.txt nor tokenizer.json; "
                                      "use GPT2Tokenizer() for the bundled GPT-2 vocabulary.")

    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        sources = [self.tokenizer_file] if self.tokenizer_file else [self.vocab_file, self.merges_file]
        for src in sources:
            shutil.copyfile(src, os.path.join(directory, os.path.basename(src)))
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": self.add_prefix_space,
                       "model_max_length": self.model_max_length, "bos_token": self.bos_token,
                       "eos_token": self.eos_token, "unk_token": self.unk_token, "pad_token": self.pad_token,
                       "padding_side": self.padding_side, "truncation_side": self.truncation_side}, f, indent=2)
        return sources


_SETTINGS = ("add_prefix_space", "padding_side", "truncation_side", "model_max_length", "pad_token", "eos_token",
             "bos_token", "unk_token", "errors")


def _saved_settings(directory):
    """The GPT2Tokenizer arguments a tokenizer_config.json (and special_tokens_map.json) holds."""
    values = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            values.update(_read_json(path))
    out = {k: (v.get("content") if isinstance(v, dict) else v) for k, v in values.items() if k in _SETTINGS}
    path = os.path.join(directory, "tokenizer.json")
    if os.path.exists(path):  # transformers keeps the padding / truncation direction here
        backend = _read_json(path)
        for key, setting in (("padding", "padding_side"), ("truncation", "truncation_side")):
            direction = (backend.get(key) or {}).get("direction")
            if direction and setting not in out:
                out[setting] = direction.lower()
    if not isinstance(out.get("model_max_length"), int) or out["model_max_length"] > 10 ** 9:
        out.pop("model_max_length", None)  # HF writes a huge sentinel for "no limit"
    return out


def _as_tensors(out, return_tensors, single):
    if return_tensors is None:
        return {k: v[0] for k, v in out.items()} if single else out
    if len({len(r) for r in out["input_ids"]}) > 1:
        raise GPT2InputError("rows have different lengths; pass padding=True to return tensors.")
    arrays = {k: np.asarray(v, np.int32).reshape(len(v), -1) for k, v in out.items()}
    if return_tensors == "np":
        return arrays
    if return_tensors == "tf":
        import tensorflow as tf

        return {k: tf.constant(v) for k, v in arrays.items()}
    raise GPT2InputError(f"return_tensors={return_tensors!r}: use 'np', 'tf' or None.")


_BUNDLED = {}


def _bundled_vocab():
    if "vocab" not in _BUNDLED:
        _BUNDLED["vocab"] = _read_json(os.path.join(ASSETS, "vocab.json"))
    return _BUNDLED["vocab"]


def _same_file(a, b):
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()
