"""Generation: the decode loop, the LM head strategies, sampling, beam search, GenerationConfig.

    config.py    GenerationConfig: HF argument names, frozen, the trace key of compiled loops
    decoder.py   Decoder: prefill, one decode step, the XLA and Python loops over it
    heads.py     fp32 head and int8-screened greedy head, one interface
    screen.py    the int8 screen's bound and exact argmax
    sampling.py  logit processors, counter-based sampling
    beam.py      beam search in one while loop
    generate.py  generate(): validation, buckets, padding
"""

from tfgpt2.generation.config import GenerationConfig
from tfgpt2.generation.decoder import Decoder, decoder_of
from tfgpt2.generation.generate import GenerateOutput, generate

__all__ = ["Decoder", "GenerateOutput", "GenerationConfig", "decoder_of", "generate"]
