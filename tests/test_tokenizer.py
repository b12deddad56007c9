"""GPT2Tokenizer vs tiktoken (shared GPT-2 ranks) and HF tokenizers (bundled files)."""

import os
import subprocess
import sys

import pytest

import helpers
from corpus import build_corpus, invalid_strings
from helpers import ROOT
from tfgpt2 import GPT2Tokenizer
from tfgpt2.tokenizer import ASSETS, EOT


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer()


@pytest.fixture(scope="module")
def reference_tiktoken():
    return helpers.reference_tiktoken()


@pytest.fixture(scope="module")
def reference_hf():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    hf = Tokenizer(models.BPE.from_file(os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(EOT, special=True)])
    return hf


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


def test_corpus_ids_identical_to_tiktoken_and_hf_tokenizers(tok, reference_tiktoken, reference_hf, corpus):
    assert len(corpus) >= 5000
    ours = tok.encode_batch(corpus)
    tk = reference_tiktoken.encode_batch(corpus, allowed_special="all")
    hf = [e.ids for e in reference_hf.encode_batch(corpus, add_special_tokens=False)]
    vs_tk = sum(a != b for a, b in zip(ours, tk))
    vs_hf = sum(a != b for a, b in zip(ours, hf))
    print(f"{len(corpus)} strings, {sum(map(len, ours))} tokens: {vs_tk} mismatches vs tiktoken, "
          f"{vs_hf} vs HF tokenizers")
    assert vs_tk == 0 and vs_hf == 0


def test_special_token_disallowed_is_plain_text(tok, reference_tiktoken):
    text = "a<|endoftext|>b <|endoftext|>"
    assert tok.encode(text) == reference_tiktoken.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special=False) == reference_tiktoken.encode_ordinary(text)
    assert tok.encode(text).count(50256) == 2


def test_invalid_surrogates_are_replaced_like_tiktoken(tok, reference_tiktoken, reference_hf):
    for text in invalid_strings():
        cleaned = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        ids = tok.encode(text)
        assert ids == reference_tiktoken.encode(text) == reference_hf.encode(cleaned, add_special_tokens=False).ids
        assert tok.decode(ids) == cleaned


def test_decode_round_trip_every_valid_string(tok, corpus):
    ids = tok.encode_batch(corpus)
    bad = [s for s, row in zip(corpus, ids) if tok.decode(row) != s]
    assert not bad, bad[:3]


def test_partial_utf8_decodes_with_replacement(tok, reference_tiktoken):
    ids = tok.encode("🤖 日本")
    assert len(ids) > 3
    for cut in range(1, len(ids)):
        assert tok.decode(ids[:cut]) == reference_tiktoken.decode(ids[:cut], errors="replace")
    assert "\ufffd" in tok.decode(ids[:1])
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids[:1], errors="strict")


def test_batch_padding_truncation_and_masks(tok):
    texts = ["Hello world", "A much longer sentence than the first one", "x"]
    right = tok(texts, padding=True, return_tensors="np")
    left = tok(texts, padding=True, padding_side="left", return_tensors="np")
    lengths = [len(tok.encode(t)) for t in texts]
    assert right["input_ids"].shape == (3, max(lengths))
    assert right["attention_mask"].sum(1).tolist() == lengths
    for row, n in enumerate(lengths):
        assert right["input_ids"][row, :n].tolist() == tok.encode(texts[row])
        assert left["input_ids"][row, -n:].tolist() == tok.encode(texts[row])
        assert left["attention_mask"][row, -n:].all() and not left["attention_mask"][row, :-n].any()
    assert (left["input_ids"][left["attention_mask"] == 0] == tok.pad_token_id).all()
    short = tok(texts, truncation=True, max_length=3, padding="max_length", return_tensors="np")
    assert short["input_ids"].shape == (3, 3)
    assert short["input_ids"][1].tolist() == tok.encode(texts[1])[:3]
    assert short["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    single = tok("Hello world")
    assert single["input_ids"] == tok.encode("Hello world") and single["attention_mask"] == [1, 1]
    tf_batch = tok(texts, padding=True, return_tensors="tf")
    assert tf_batch["input_ids"].dtype.name == "int32"


def test_add_prefix_space_matches_hf(tok, reference_hf):
    assert tok.encode("Hello", add_prefix_space=True) == reference_hf.encode(" Hello").ids
    assert GPT2Tokenizer(add_prefix_space=True).encode("Hello") == tok.encode(" Hello")


def test_bad_input_errors(tok):
    with pytest.raises(ValueError, match="str"):
        tok.encode_batch([b"bytes"])
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a b c"], return_tensors="np")
    with pytest.raises(ValueError, match=r"\[0, 50257\)"):
        tok.decode([50257])
    with pytest.raises(ValueError, match="padding_side"):
        tok(["a"], padding=True, padding_side="middle")


def test_from_pretrained_files_and_tokenizer_json(tok, reference_hf, corpus, tmp_path):
    tok.save_pretrained(tmp_path / "pair")
    again = GPT2Tokenizer.from_pretrained(str(tmp_path / "pair"))
    assert type(again._engine).__name__ == "_Tiktoken"
    reference_hf.save(str(tmp_path / "tokenizer.json"))
    os.makedirs(tmp_path / "json", exist_ok=True)
    os.replace(tmp_path / "tokenizer.json", tmp_path / "json" / "tokenizer.json")
    via_json = GPT2Tokenizer.from_pretrained(str(tmp_path / "json"))
    assert type(via_json._engine).__name__ == "_HFTokenizers"
    sample = corpus[::10]
    assert via_json.encode_batch(sample) == tok.encode_batch(sample) == again.encode_batch(sample)
    assert via_json.decode(tok.encode("héllo 🤖")) == "héllo 🤖"
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        GPT2Tokenizer.from_pretrained(str(tmp_path))


def test_bundled_vocab_regenerates_identically(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_vocab.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in ("vocab.json", "merges.txt"):
        with open(tmp_path / name, "rb") as a, open(os.path.join(ASSETS, name), "rb") as b:
            assert a.read() == b.read(), name


def test_hf_attributes_behave_like_transformers(tmp_path):
    """The attributes and call options users set on transformers' GPT2Tokenizer, side by side with it."""
    import transformers

    texts = ["Hello world, this is GPT-2.", "Hi", "A somewhat longer sentence for truncation"]
    theirs = transformers.GPT2Tokenizer(os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt"))
    mine = GPT2Tokenizer()
    for t in (theirs, mine):
        t.pad_token = t.eos_token
        t.padding_side = "left"
        t.truncation_side = "left"
        t.model_max_length = 6
    assert mine.pad_token_id == theirs.pad_token_id and mine.eos_token == theirs.eos_token
    assert mine.eos_token_id == theirs.eos_token_id and mine.bos_token_id == theirs.bos_token_id
    for kwargs in (dict(padding=True), dict(padding=True, truncation=True), dict(padding="max_length", max_length=12),
                   dict(padding=True, padding_side="right"), dict(truncation=True, max_length=4, padding=True)):
        a = mine(texts, return_tensors="np", **kwargs)
        b = theirs(texts, return_tensors="np", **kwargs)
        assert a["input_ids"].tolist() == b["input_ids"].tolist(), kwargs
        assert a["attention_mask"].tolist() == b["attention_mask"].tolist(), kwargs
    ids = mine(texts, padding=True, return_tensors="tf")["input_ids"]
    assert ids.dtype.is_integer and ids.shape[0] == 3
    for skip in (False, True):
        assert mine.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids.numpy(),
                                                                                     skip_special_tokens=skip)
        assert mine.decode(ids[1], skip_special_tokens=skip) == theirs.decode(ids[1].numpy(),
                                                                              skip_special_tokens=skip)
    assert mine.convert_ids_to_tokens([15496, 995]) == theirs.convert_ids_to_tokens([15496, 995])
    mine.save_pretrained(tmp_path)
    again = GPT2Tokenizer.from_pretrained(str(tmp_path))
    assert (again.pad_token, again.padding_side, again.truncation_side, again.model_max_length) == \
        (mine.pad_token, "left", "left", 6)
    theirs.save_pretrained(tmp_path / "hf")
    from_hf, reloaded = GPT2Tokenizer.from_pretrained(str(tmp_path / "hf")), transformers.AutoTokenizer.from_pretrained(
        str(tmp_path / "hf"))
    assert (from_hf.pad_token, from_hf.padding_side) == (reloaded.pad_token, reloaded.padding_side)
    assert from_hf(texts)["input_ids"] == reloaded(texts)["input_ids"]
