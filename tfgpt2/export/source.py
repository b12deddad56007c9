"""The model an export starts from: an HF directory or hub id, a `.keras` file, or a live model."""

import json
import os
import zipfile


def is_keras_file(src):
    """True for a `.keras` path (which must exist); False for an HF dir or hub id."""
    if src.endswith(".keras") and not os.path.exists(src):
        raise FileNotFoundError(f"{src} does not exist; pass a .keras file saved with model.save().")
    return src.endswith(".keras")


def load_model(src):
    from tfgpt2 import TFGPT2LMHeadModel

    if is_keras_file(src):
        import keras

        return keras.saving.load_model(src)
    return TFGPT2LMHeadModel.from_pretrained(src)


def weight_state(src):
    """{transformers key: float32 array (PyTorch layout)} of an HF directory / hub id, each tensor read
    when asked for (safetensors); a .keras file is loaded whole."""
    from tfgpt2 import weights
    from tfgpt2.hub import resolve

    if is_keras_file(src):
        return {weights.hf_key(k): v for k, v in weights.state_dict(load_model(src)).items()}
    return weights.checkpoint_state(src if os.path.isdir(src) else resolve(src))


def source_config(src):
    """The GPT2Config of a model, HF dir/hub id or .keras file, without loading weights."""
    from tfgpt2 import GPT2Config
    from tfgpt2.hub import resolve

    if hasattr(src, "config"):
        return src.config
    if is_keras_file(src):
        with zipfile.ZipFile(src) as archive:
            saved = json.loads(archive.read("config.json"))
        if "config" not in saved.get("config", {}):
            raise ValueError(f"{src} does not hold a tfgpt2 model (its config has no GPT2Config); "
                             "save a TFGPT2LMHeadModel with model.save('m.keras').")
        return GPT2Config.from_dict(saved["config"]["config"])
    return GPT2Config.from_pretrained(src if os.path.isdir(src) else resolve(src))


def is_base_model(src):
    """True when `src` is a base model without an LM head: a TFGPT2Model, or a checkpoint whose config
    names the GPT2Model architecture."""
    if hasattr(src, "config"):
        return type(src).__name__ == "TFGPT2Model"
    if is_keras_file(src):
        with zipfile.ZipFile(src) as archive:
            return json.loads(archive.read("config.json")).get("class_name") == "TFGPT2Model"
    return source_config(src).extra.get("architectures") == ["GPT2Model"]
