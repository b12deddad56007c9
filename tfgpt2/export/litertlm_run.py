"""Running a .litertlm in LiteRT-LM's own Python API (litert-lm-api): greedy text, speed, its inner graph."""

import os
import tempfile

CACHE = os.path.join(tempfile.gettempdir(), "tfgpt2-litertlm-cache")  # LiteRT-LM's weight cache directory


def engine(path, threads=2, benchmark=False):
    """A LiteRT-LM CPU engine on `path`."""
    import litert_lm
    from litert_lm import interfaces

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    os.makedirs(CACHE, exist_ok=True)
    try:
        return litert_lm.Engine(path, backend=interfaces.CPU(thread_count=threads), cache_dir=CACHE,
                                enable_benchmark=benchmark)
    except RuntimeError as e:
        raise ValueError(f"LiteRT-LM cannot open {os.path.basename(path)}: {e}") from None


def generate(lm, prompt, max_new_tokens, capacity):
    """(text, why it stopped) for greedy decoding of `prompt` (text) by engine `lm`.

    `capacity`: the file's max_num_tokens. LiteRT-LM stops silently when its cache is full and fails on a
    prompt that does not fit; both are named here ("cache full", or a ValueError before running)."""
    from litert_lm import interfaces

    prompt_tokens = len(lm.tokenize(prompt))
    if prompt_tokens >= capacity:
        raise ValueError(f"the prompt has {prompt_tokens} tokens; the .litertlm holds {capacity} (max_seq_len): "
                         "shorten it or export with a larger --max-seq-len.")
    with lm.create_session(apply_prompt_template=False, max_output_tokens=max_new_tokens,
                           sampler_config=interfaces.SamplerConfig(top_k=1, temperature=0.0, seed=0)) as session:
        session.run_prefill([prompt])
        chunks = ["".join(chunk.texts) for chunk in session.run_decode_async()]  # one per token
    text, new = "".join(chunks), len(chunks)
    if prompt_tokens + new >= capacity:
        return text, f"cache full ({capacity} tokens, max_seq_len)"
    return text, "max_new_tokens" if new >= max_new_tokens else "stop token"


def speed(path, prompt="The meaning of life is", new_tokens=32, threads=2):
    """(prefill tok/s, decode tok/s) as LiteRT-LM's own benchmark counters report them."""
    from litert_lm import interfaces

    with engine(path, threads, benchmark=True) as lm, lm.create_session(
            apply_prompt_template=False, max_output_tokens=new_tokens,
            sampler_config=interfaces.SamplerConfig(top_k=1, temperature=0.0, seed=0)) as session:
        session.run_prefill([prompt])
        for _ in session.run_decode_async():
            pass
        info = session.get_benchmark_info()
    return info.last_prefill_tokens_per_second, info.last_decode_tokens_per_second


def inner_tflite(path, directory):
    """Unpacks the .tflite inside a .litertlm into `directory`; returns its path."""
    from litert_lm_builder import litertlm_builder

    litertlm_builder.unpack(path, directory)
    names = [n for n in os.listdir(directory) if n.endswith(".tflite")]
    if len(names) != 1:
        raise ValueError(f"{os.path.basename(path)} holds {len(names)} .tflite models, expected 1")
    return os.path.join(directory, names[0])
