"""Fixtures: tiny random GPT-2s built and saved by transformers (PyTorch), the reference, and one
shared export of the smallest; `--slow` adds the long end-to-end tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import CONFIGS, build_hf  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long end-to-end runs; opt in with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """{config name: (hf LM model, dir with model.safetensors)} for every CONFIGS entry."""
    out = {}
    for name, kwargs in CONFIGS.items():
        model = build_hf("GPT2LMHeadModel", kwargs)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, str(path))
    return out


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """One `tfgpt2 export` (fp32 + int8, 24 slots, prefill 8) of a tiny GPT-2, shared by every test that
    reads an export: (model, export dir, report). It is the export the Kotlin golden model.json comes from
    (tools/write_goldens.py)."""
    import write_goldens

    root = tmp_path_factory.mktemp("exp")
    held_out = np.random.default_rng(0).integers(0, CONFIGS["small-gelu_new"]["vocab_size"], (2, 16))
    model, report = write_goldens.tiny_export(str(root), held_out)
    return model, root / "export", report
