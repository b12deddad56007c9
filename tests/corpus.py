"""A deterministic tokenizer stress corpus: prose, code, numbers, whitespace, all Unicode planes."""

import inspect
import json
import random
import unicodedata

WORDS = ("the of and to in is was he for it with as his on be at by had are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out "
         "so said what up its about into than them can only other new some could time these two may then "
         "do first any my now such like our over man me even most made after also did many before must "
         "through back years where much your way well down should because each just those people Mr how "
         "too little state good very make world still own see men work long get here between both life "
         "being under never day same another know while last might us great old year off come since "
         "against go came right used take three").split()
CONTRACTIONS = ["don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "they'RE", "can't", "o'clock",
                "'s", "'t", "'ll", "rock'n'roll", "y'all", "'tis"]
SCRIPTS = {  # (start, end) code point ranges per script / plane
    "latin-ext": (0x00C0, 0x024F), "greek": (0x0370, 0x03FF), "cyrillic": (0x0400, 0x04FF),
    "hebrew": (0x05D0, 0x05EA), "arabic": (0x0620, 0x064A), "devanagari": (0x0900, 0x097F),
    "thai": (0x0E01, 0x0E5B), "hangul": (0xAC00, 0xD7A3), "cjk": (0x4E00, 0x9FFF),
    "hiragana": (0x3041, 0x3096), "combining": (0x0300, 0x036F), "emoji": (0x1F300, 0x1FAFF),
    "math-alnum": (0x1D400, 0x1D7FF), "cjk-ext-b": (0x20000, 0x2A6DF), "plane3": (0x30000, 0x3134A),
    "tags": (0xE0020, 0xE007F), "private": (0xF0000, 0xFFFFD), "private-16": (0x100000, 0x10FFFD),
    "symbols": (0x2000, 0x2BFF), "fullwidth": (0xFF01, 0xFF5E),
}
ZWJ_EMOJI = ["👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "🇩🇪🇯🇵", "❤️", "🧑🏿‍💻", "1️⃣", "✊🏾"]


def _code_snippets():
    import collections
    import json as json_mod
    import textwrap

    out = []
    for module in (collections, json_mod, textwrap, random, inspect):
        lines = inspect.getsource(module).splitlines()
        out.extend("\n".join(lines[i:i + 8]) for i in range(0, min(len(lines), 1600), 8))
    return out


def _from_range(rng, lo, hi, n):
    chars = []
    while len(chars) < n:
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) != "Cs":
            chars.append(c)
    return "".join(chars)


def build_corpus(seed=0):
    """>= 5,000 strings; the same list on every machine."""
    rng = random.Random(seed)
    out = []
    for _ in range(1400):  # prose
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.3:
            words.insert(rng.randint(0, len(words)), rng.choice(CONTRACTIONS))
        text = " ".join(words)
        out.append(text.capitalize() + rng.choice([".", "!", "?", ",", "", "...", ";"]))
    out.extend(_code_snippets()[:900])
    for _ in range(500):  # numbers
        out.append(rng.choice([str(rng.randint(0, 10 ** rng.randint(1, 25))),
                               f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 9)}f}",
                               f"{rng.random():e}", f"0x{rng.getrandbits(64):x}",
                               f"{rng.randint(0, 999)},{rng.randint(0, 999):03d}",
                               f"+1 ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"]))
    for _ in range(400):  # whitespace runs
        parts = [rng.choice(WORDS + ["", "x"]) for _ in range(rng.randint(1, 6))]
        seps = ["".join(rng.choice([" ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2009", "\x0b", "\x0c"])
                        for _ in range(rng.randint(1, 7))) for _ in parts]
        out.append("".join(p + s for p, s in zip(parts, seps)))
    for _ in range(300):  # contractions in context
        out.append(f"{rng.choice(WORDS)}{rng.choice(CONTRACTIONS)} {rng.choice(CONTRACTIONS).upper()}")
    for _ in range(1200):  # every plane / script
        name = rng.choice(list(SCRIPTS))
        text = _from_range(rng, *SCRIPTS[name], rng.randint(1, 12))
        if rng.random() < 0.5:
            text = f"{rng.choice(WORDS)} {text}{rng.choice(['', ' ', '.', ' ' + rng.choice(WORDS)])}"
        out.append(text)
    for _ in range(200):
        out.append(" ".join(rng.choice(ZWJ_EMOJI) + rng.choice(["", " ", "x", "!"]) for _ in range(rng.randint(1, 5))))
    for _ in range(200):  # control characters
        out.append("".join(chr(rng.choice(list(range(0, 32)) + [127] + list(range(0x80, 0xA0))))
                           + rng.choice(["", "a", " "]) for _ in range(rng.randint(1, 6))))
    for _ in range(150):  # NFC vs NFD, RTL marks, zero-width
        word = rng.choice(["café", "naïve", "Ångström", "résumé", "עִבְרִית", "مَرْحَبًا"])
        out.append(rng.choice([unicodedata.normalize("NFD", word), word + "\u200f\u200e",
                               "\u200b".join(word), "\ufeff" + word]))
    for _ in range(150):  # very long words
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(100, 3000))))
    out.extend(["", " ", "  ", "\n\n\n", "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>",
                "<|endoftext", "|>", "<|"])
    return out


def invalid_strings(seed=1):
    """Strings with lone surrogates: not valid Unicode; encoders replace them by U+FFFD."""
    rng = random.Random(seed)
    return [rng.choice(WORDS) + chr(rng.randint(0xD800, 0xDFFF)) + rng.choice(["", " x", "🤖"]) for _ in range(60)]


if __name__ == "__main__":
    corpus = build_corpus()
    print(len(corpus), json.dumps(corpus[:3]))
