"""In-graph tokenizer == Python tokenizer, in tf.function and after SavedModel load in a fresh process."""

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from corpus import build_corpus
from helpers import run_python
from tfgpt2 import GPT2Tokenizer
from tfgpt2.text_graph import GPT2GraphTokenizer


@pytest.fixture(scope="module")
def sample():
    corpus = build_corpus()
    rng = np.random.default_rng(1)
    short = [s for s in corpus if len(s) < 400]
    long_words = [s for s in corpus if len(s) >= 400][:12]
    picks = rng.choice(len(short), 1200, replace=False)
    return [short[i] for i in sorted(picks)] + long_words + ["", "a\x00 b", "<|endoftext|> x  \n"]


@pytest.fixture(scope="module")
def graph_tok():
    return GPT2GraphTokenizer()


def _encode_in_batches(fn, texts, size=256):
    out = []
    for i in range(0, len(texts), size):
        out.extend(fn(tf.constant(texts[i:i + size])).to_list())
    return out


@pytest.mark.slow  # by default the fresh-process SavedModel test checks the in-graph ids
def test_graph_ids_equal_python_in_tf_function(graph_tok, sample):
    python = GPT2Tokenizer().encode_batch(sample)
    graph = _encode_in_batches(tf.function(graph_tok.encode), sample)
    mismatches = sum(a != b for a, b in zip(python, graph))
    print(f"{len(sample)} strings: {mismatches} mismatches (tf.function vs Python)")
    assert len(sample) >= 1000 and mismatches == 0


def test_graph_decode_matches_python(graph_tok, sample):
    tok = GPT2Tokenizer()
    ids = tok.encode_batch(sample[:300])
    decoded = tf.function(graph_tok.decode)(tf.ragged.constant(ids, dtype=tf.int32)).numpy()
    assert [d.decode("utf-8", "replace") for d in decoded] == [tok.decode(r) for r in ids]


@pytest.mark.slow
def test_savedmodel_in_fresh_process_without_tfgpt2(graph_tok, sample, tmp_path):
    module = tf.Module()
    module.tok = graph_tok
    module.encode = tf.function(lambda t: graph_tok.encode(t).to_tensor(-1),
                                input_signature=[tf.TensorSpec([None], tf.string)])
    module.decode = tf.function(lambda ids: graph_tok.decode(tf.RaggedTensor.from_tensor(ids, padding=-1)),
                                input_signature=[tf.TensorSpec([None, None], tf.int32)])
    tf.saved_model.save(module, str(tmp_path / "tok"))
    texts_path = tmp_path / "texts.json"
    texts_path.write_text(json.dumps(sample), encoding="utf-8")
    code = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf, tensorflow_text  # registers the RegexSplitWithOffsets op
        assert "tfgpt2" not in sys.modules
        m = tf.saved_model.load({str(tmp_path / 'tok')!r})
        texts = json.load(open({str(texts_path)!r}, encoding="utf-8"))
        out = []
        for i in range(0, len(texts), 256):
            ids = m.encode(tf.constant(texts[i:i + 256])).numpy()
            out.extend([[int(x) for x in row if x >= 0] for row in ids])
        back = m.decode(tf.constant([[15496, 995, -1]], tf.int32)).numpy()[0].decode()
        assert "tfgpt2" not in sys.modules
        print(json.dumps({{"ids": out, "back": back}}))
    """)
    result = json.loads(run_python(code).strip().splitlines()[-1])
    python = GPT2Tokenizer().encode_batch(sample)
    mismatches = sum(a != b for a, b in zip(python, result["ids"]))
    print(f"{len(sample)} strings after SavedModel load: {mismatches} mismatches")
    assert mismatches == 0 and result["back"] == "Hello world"
