"""tokenizer.json: the bundled GPT-2 vocabulary as an HF `tokenizers` file (ORT GenAI and LiteRT-LM read it)."""

import json
import os


def write_tokenizer_json(directory):
    """DIR/tokenizer.json (+ tokenizer_config.json): the bundled GPT-2 vocabulary as an HF tokenizers file,
    built by `tokenizers` the way transformers converts GPT-2's slow tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    from tfgpt2.tokenizer import ASSETS, EOT

    vocab, merges = os.path.join(ASSETS, "vocab.json"), os.path.join(ASSETS, "merges.txt")
    tokenizer = Tokenizer(models.BPE.from_file(vocab, merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
                   "add_prefix_space": False, "model_max_length": 1024}, f, indent=2)
