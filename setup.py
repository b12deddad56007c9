"""tfgpt2: GPT-2 for TensorFlow / Keras 3 — HF checkpoints, fit, XLA generate, TF Serving, LiteRT."""

from setuptools import find_packages, setup

# `tfgpt2 export --formats onnx`: tf2onnx converts, ONNX Runtime checks, tokenizers writes tokenizer.json
ONNX = ["tf2onnx>=1.17", "onnx>=1.18", "onnxruntime>=1.22", "tokenizers>=0.21"]
# `tfgpt2 export --formats litertlm`: the builder packs the file, LiteRT-LM's Python API checks and runs it
LITERTLM = ["litert-lm-builder>=0.18.1", "litert-lm-api>=0.18.1", "tokenizers>=0.21"]

setup(
    name="tfgpt2",
    version="0.1.0",
    description="GPT-2 for TensorFlow / Keras 3: HF checkpoints, fit, XLA generate, TF Serving, LiteRT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tfgpt2", "tfgpt2.*"]),
    package_data={"tfgpt2": ["assets/*"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<4",
        "keras-hub>=0.32",
        "tensorflow-text==2.21.*",
        "numpy>=1.26",
        "safetensors>=0.4",
        "huggingface_hub>=0.30",
        "tiktoken>=0.9",
        "h5py>=3.10",
        "ai-edge-litert>=2.3",  # CompiledModel CpuOptions.xnnpack_weight_cache_path
        "ai-edge-quantizer>=0.10",
        "matplotlib>=3.8",
        "tensorflow-serving-api==2.21.*",
        "tqdm>=4.66",
    ],
    extras_require={
        "onnx": ONNX,
        "litertlm": LITERTLM,
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.6",
            "filelock>=3.12",  # the tiny export shared by the xdist workers (tests/conftest.py)
            "torch==2.13.0",
            "transformers>=5.0",
            *ONNX,
            *LITERTLM,
            "onnxruntime-genai>=0.18",
        ],
        "bench": [
            "torch==2.13.0",
            "transformers>=5.0",
            *ONNX,
            *LITERTLM,
            "litert-lm>=0.18.1",
            "onnxscript>=0.3",
            "onnxruntime-genai>=0.18",
        ],
    },
    entry_points={"console_scripts": ["tfgpt2=tfgpt2.cli.main:main"]},
)
