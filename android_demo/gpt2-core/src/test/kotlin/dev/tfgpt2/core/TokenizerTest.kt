package dev.tfgpt2.core

import org.junit.Test

class TokenizerTest {
    private val tok = Golden.tokenizer
    private val cases = (Golden.json("tests/golden/tokenizer.json")["cases"] as List<*>).map { c ->
        c as Map<*, *>
        (c["text"] as String) to (c["ids"] as List<*>).map { (it as Long).toInt() }.toIntArray()
    }

    @Test fun idsEqualPythonOnEveryGoldenString() {
        Check.isTrue(cases.size >= 1000, "only ${cases.size} golden cases")
        val wrong = cases.filter { (text, ids) -> !tok.encode(text).contentEquals(ids) }
        Check.equal(emptyList<String>(), wrong.take(5).map { (text, ids) ->
            "${text.quoted()}: python ${ids.toList()} kotlin ${tok.encode(text).toList()}" })
        for ((text, ids) in cases) Check.arrays(ids, tok.encode(text), text)
        println("tokenizer: ${cases.size} golden strings, ${cases.sumOf { it.second.size }} ids, ${wrong.size} mismatches")
    }

    @Test fun decodeIsByteExact() {
        var checked = 0
        for ((text, ids) in cases) {
            if (text.any { it.isSurrogate() } && Gpt2Tokenizer.replaceLoneSurrogates(text) != text) continue
            Check.bytes(text.toByteArray(Charsets.UTF_8), tok.decodeBytes(ids), text)
            Check.equal(text, tok.decode(ids))
            checked++
        }
        Check.isTrue(checked >= 1000, "only $checked valid strings")
    }

    @Test fun multiByteAndEmoji() {
        for (text in listOf("naïve café", "日本語のテキスト", "👩‍👩‍👧 family", "🇺🇳 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\u0000b", "  \n\t x")) {
            Check.equal(text, tok.decode(tok.encode(text)))
        }
        val ids = tok.encode("🙂")
        Check.isTrue(ids.size > 1, "the emoji should take several byte-level tokens")
        // a single byte-level token of a multi-byte character is not valid UTF-8 on its own
        Check.equal("\uFFFD", tok.decode(intArrayOf(ids[0])).take(1))
    }

    @Test fun specialTokenAndLoneSurrogates() {
        Check.arrays(intArrayOf(50256), tok.encode("<|endoftext|>"))
        Check.isTrue(tok.encode("<|endoftext|>", allowSpecial = false).size > 1)
        Check.arrays(tok.encode("x\uFFFD"), tok.encode("x\uD800"))
        Check.equal(50256, tok.eosTokenId)
        Check.equal(50257, tok.vocabSize)
    }

    @Test fun badInputSaysWhatToFix() {
        Check.throws(IllegalArgumentException::class.java, "outside the vocabulary") { tok.decode(intArrayOf(50257)) }
        Check.throws(IllegalArgumentException::class.java, "expected two symbols") {
            Gpt2Tokenizer.fromText("""{"a": 0, "<|endoftext|>": 1}""", "#version: 0.2\na b c\n")
        }
        Check.throws(IllegalArgumentException::class.java, "not in vocab.json") {
            Gpt2Tokenizer.fromText("""{"a": 0}""", "")
        }
    }
}
