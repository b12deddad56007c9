"""Resolving Hugging Face hub ids to local directories (cache first, then a short online try)."""

import os

from tfgpt2.errors import CheckpointNotFoundError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5")


def looks_like_path(name):
    return os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1


def resolve(name, filenames=("config.json",) + WEIGHT_FILES):
    """A local directory holding `name`'s files: HF cache, else download with a 10 s timeout."""
    if looks_like_path(name):
        raise CheckpointNotFoundError(f"{name} is not a checkpoint directory; pass the directory that holds "
                                      "config.json and the weights.")
    try:
        import huggingface_hub
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointNotFoundError(_offline_message(name, "huggingface_hub is not installed")) from e
    patterns = list(filenames) + ["vocab.json", "merges.txt", "tokenizer.json", "generation_config.json"]
    try:
        return huggingface_hub.snapshot_download(name, allow_patterns=patterns, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: fall through to the network
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise CheckpointNotFoundError(_offline_message(name, "HF_HUB_OFFLINE is set"))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return huggingface_hub.snapshot_download(name, allow_patterns=patterns)
    except Exception as e:  # noqa: BLE001 - any hub/network failure gets the same advice
        raise CheckpointNotFoundError(_offline_message(name, f"{type(e).__name__}: {str(e)[:200]}")) from e


def _offline_message(name, why):
    return (f"could not get {name!r} from the Hugging Face hub ({why}). Pass a local directory "
            "holding config.json and model.safetensors (or pytorch_model.bin / tf_model.h5), e.g. one "
            "written by save_pretrained, or run `tfgpt2 demo` to train a small model offline.")
