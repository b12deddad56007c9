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


# The longest test files run first, so `pytest -n 2 --dist loadfile` (the README's command) doesn't end
# on one long file while the other worker idles.
LONGEST_FIRST = ["test_multiworker.py", "test_saved_model.py", "test_hf_generate.py", "test_export_pipeline.py",
                 "test_quantization.py", "test_tflite.py", "test_keras_quantize.py", "test_docstrings.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise kept
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
    (tools/write_goldens.py). Under pytest-xdist the first worker that asks writes it and the others read it."""
    import json

    from filelock import FileLock

    import write_goldens
    from tfgpt2 import TFGPT2LMHeadModel

    held_out = np.random.default_rng(0).integers(0, CONFIGS["small-gelu_new"]["vocab_size"], (2, 16))
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = tmp_path_factory.getbasetemp().parent / "tiny_export"  # one directory for the run's workers
    else:
        root = tmp_path_factory.mktemp("exp")
    with FileLock(str(root) + ".lock"):
        if not (root / "export" / "report.json").exists():
            model, report = write_goldens.tiny_export(str(root), held_out)
            return model, root / "export", report
    model = TFGPT2LMHeadModel.from_pretrained(str(root / "hf"))
    return model, root / "export", json.loads((root / "export" / "report.json").read_text())
