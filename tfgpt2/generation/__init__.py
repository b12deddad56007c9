"""Generation: the decode loop, the LM head strategies, sampling, beam search, settings.

    generation_config.py  GenerationConfig: transformers' settings object / generation_config.json
    decode_config.py      DecodeConfig: what one compiled loop is specialised on (frozen, the trace key)
    decoder.py            Decoder: prefill, one decode step, the XLA and Python loops over it
    heads.py              fp32 head and int8-screened greedy head, one interface
    screen.py             the int8 screen's bound and exact argmax
    sampling.py           logit processors, counter-based sampling
    bans.py               n-gram and bad-word bans over the token history
    beam.py               beam search in one while loop
    generate.py           generate(): settings, validation, buckets, padding
"""

from tfgpt2.generation.decode_config import DecodeConfig
from tfgpt2.generation.decoder import Decoder, decoder_of
from tfgpt2.generation.generate import GenerateOutput, generate
from tfgpt2.generation.generation_config import GenerationConfig

__all__ = ["DecodeConfig", "Decoder", "GenerateOutput", "GenerationConfig", "decoder_of", "generate"]
