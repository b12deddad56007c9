"""from_pretrained reads safetensors a tensor at a time into variables that start uninitialized: what the
checkpoint holds equals transformers, what it lacks is initialized as the class's own init would be."""

import numpy as np

from helpers import CONFIGS, build_hf, max_diff, torch_run
from tfgpt2 import TFGPT2ForSequenceClassification, TFGPT2LMHeadModel


def test_sharded_safetensors_load_like_transformers(tmp_path):
    hf = build_hf("GPT2LMHeadModel", CONFIGS["wide-gelu-inv_idx"])
    hf.save_pretrained(tmp_path, max_shard_size="40KB")  # several model-0000k-of-0000n.safetensors + an index
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    ids = np.random.default_rng(0).integers(0, hf.config.vocab_size, (2, 9)).astype("int32")
    model = TFGPT2LMHeadModel.from_pretrained(str(tmp_path))
    assert max_diff(model(ids).logits, torch_run(hf, ids).logits) <= 1e-4


def test_weights_the_checkpoint_lacks_get_their_initializer(hf_checkpoints):
    """An LM checkpoint has no `score`: the new head is drawn from N(0, initializer_range) (never the
    uninitialized memory the loaded weights started from), and the loaded ones match transformers."""
    hf, path = hf_checkpoints["deep-relu-upcast"]
    model = TFGPT2ForSequenceClassification.from_pretrained(path, num_labels=3)
    score = model.score.kernel.numpy()
    std = model.config.initializer_range
    assert np.isfinite(score).all() and 0.5 * std < score.std() < 2 * std and np.abs(score.mean()) < std
    wte = hf.transformer.wte.weight.detach().numpy()
    assert np.array_equal(model.transformer.wte.embeddings.numpy(), wte)
    assert all(np.isfinite(v.numpy()).all() for v in model.variables)
