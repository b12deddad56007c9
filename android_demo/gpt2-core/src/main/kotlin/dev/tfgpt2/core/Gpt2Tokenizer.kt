package dev.tfgpt2.core

import java.io.File
import java.util.regex.Pattern

/**
 * GPT-2 byte-level BPE over UTF-8 bytes, read from the exported `vocab.json` + `merges.txt`.
 *
 * Same ids as tiktoken / HF tokenizers on the real vocabulary (checked against the Python golden
 * vectors). Text is split with GPT-2's pre-tokenizer regex, each piece's UTF-8 bytes are mapped to
 * the printable byte alphabet, then merged by rank. Lone UTF-16 surrogates are encoded as U+FFFD,
 * as tiktoken does. `<|endoftext|>` in the text is the special token unless `allowSpecial` is false.
 *
 * ```
 * val tok = Gpt2Tokenizer.fromFiles(File("vocab.json"), File("merges.txt"))
 * val ids = tok.encode("Hello world")   // [15496, 995]
 * val text = tok.decode(ids)            // "Hello world"
 * ```
 */
class Gpt2Tokenizer(
    private val encoder: Map<String, Int>,
    merges: List<Pair<String, String>>,
    val specialTokens: Set<String> = setOf(END_OF_TEXT),
) {
    private val decoder: Array<String?>
    private val ranks = HashMap<String, Int>(merges.size * 2)
    private val cache = object : LinkedHashMap<String, IntArray>(1024, 0.75f, true) {
        override fun removeEldestEntry(eldest: MutableMap.MutableEntry<String, IntArray>?) = size > 20_000
    }
    private val specialPattern: Pattern? = if (specialTokens.isEmpty()) null
        else Pattern.compile(specialTokens.sortedByDescending { it.length }.joinToString("|") { Pattern.quote(it) })

    init {
        val size = (encoder.values.maxOrNull() ?: -1) + 1
        decoder = arrayOfNulls(size)
        for ((token, id) in encoder) {
            require(id >= 0) { "vocab.json: negative id $id for ${token.quoted()}" }
            decoder[id] = token
        }
        merges.forEachIndexed { rank, (a, b) -> ranks.putIfAbsent("$a $b", rank) }
        for (s in specialTokens) require(s in encoder) { "special token ${s.quoted()} is not in vocab.json" }
    }

    val vocabSize: Int get() = decoder.size
    val eosTokenId: Int? get() = encoder[END_OF_TEXT]

    fun encode(text: String, allowSpecial: Boolean = true): IntArray {
        val clean = replaceLoneSurrogates(text)
        val out = IntArrayBuilder()
        var start = 0
        if (allowSpecial && specialPattern != null) {
            val m = specialPattern.matcher(clean)
            while (m.find()) {
                encodeOrdinary(clean.substring(start, m.start()), out)
                out.add(encoder.getValue(m.group()))
                start = m.end()
            }
        }
        encodeOrdinary(clean.substring(start), out)
        return out.toArray()
    }

    /** The raw bytes of `ids`; `decode` is this read as UTF-8 (malformed bytes become U+FFFD). */
    fun decodeBytes(ids: IntArray): ByteArray {
        val bytes = java.io.ByteArrayOutputStream()
        for (id in ids) {
            val token = decoder.getOrNull(id)
                ?: throw IllegalArgumentException("token id $id is outside the vocabulary [0, $vocabSize)")
            for (c in token) bytes.write(BYTE_OF[c.code].also {
                require(it >= 0) { "vocab.json token ${token.quoted()} has a character outside the byte alphabet" }
            })
        }
        return bytes.toByteArray()
    }

    fun decode(ids: IntArray): String = String(decodeBytes(ids), Charsets.UTF_8)

    private fun encodeOrdinary(text: String, out: IntArrayBuilder) {
        if (text.isEmpty()) return
        val m = PRETOKENIZER.matcher(text)
        while (m.find()) {
            val piece = m.group()
            val ids = synchronized(cache) { cache[piece] } ?: bpe(piece).also { synchronized(cache) { cache[piece] = it } }
            out.addAll(ids)
        }
    }

    private fun bpe(piece: String): IntArray {
        val utf8 = piece.toByteArray(Charsets.UTF_8)
        val symbols = ArrayList<String>(utf8.size)
        for (b in utf8) symbols.add(CHAR_OF[b.toInt() and 0xFF].toString())
        while (symbols.size > 1) {
            var best = Int.MAX_VALUE
            var at = -1
            for (i in 0 until symbols.size - 1) {
                val r = ranks["${symbols[i]} ${symbols[i + 1]}"] ?: continue
                if (r < best) { best = r; at = i }
            }
            if (at < 0) break
            val left = symbols[at]
            val right = symbols[at + 1]
            var i = 0
            val merged = ArrayList<String>(symbols.size)
            while (i < symbols.size) {
                if (i < symbols.size - 1 && symbols[i] == left && symbols[i + 1] == right) {
                    merged.add(left + right); i += 2
                } else {
                    merged.add(symbols[i]); i += 1
                }
            }
            symbols.clear(); symbols.addAll(merged)
        }
        return IntArray(symbols.size) { i ->
            encoder[symbols[i]] ?: throw IllegalStateException("merges.txt produced ${symbols[i].quoted()}, " +
                "which vocab.json lacks: the two files are from different tokenizers")
        }
    }

    companion object {
        const val END_OF_TEXT = "<|endoftext|>"

        /** GPT-2's pre-tokenizer; `\s` is Unicode White_Space as in tiktoken's regex. */
        val PRETOKENIZER: Pattern = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS,
        )

        /** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
        private val CHAR_OF: CharArray = CharArray(256).also { table ->
            var next = 256
            for (b in 0 until 256) {
                val printable = b in 33..126 || b in 161..172 || b in 174..255
                table[b] = if (printable) b.toChar() else (next++).toChar()
            }
        }
        private val BYTE_OF: IntArray = IntArray(512) { -1 }.also { inv -> CHAR_OF.forEachIndexed { b, c -> inv[c.code] = b } }

        fun fromFiles(vocabJson: File, mergesTxt: File): Gpt2Tokenizer =
            fromText(vocabJson.readText(Charsets.UTF_8), mergesTxt.readText(Charsets.UTF_8), vocabJson.path)

        fun fromText(vocabJson: String, mergesTxt: String, where: String = "vocab.json"): Gpt2Tokenizer {
            val parsed = Json.parse(vocabJson) as? Map<*, *>
                ?: throw IllegalArgumentException("$where must be a JSON object {token: id}")
            val encoder = parsed.entries.associate { (k, v) ->
                (k as String) to ((v as? Long)?.toInt()
                    ?: throw IllegalArgumentException("$where: id of ${k.quoted()} is not an integer"))
            }
            val merges = mergesTxt.lineSequence()
                .filter { it.isNotBlank() && !it.startsWith("#version") }
                .mapIndexed { n, line ->
                    val parts = line.split(' ')
                    require(parts.size == 2) { "merges.txt line ${n + 2}: expected two symbols, got ${line.quoted()}" }
                    parts[0] to parts[1]
                }.toList()
            return Gpt2Tokenizer(encoder, merges)
        }

        internal fun replaceLoneSurrogates(s: String): String {
            if (s.none { it.isSurrogate() }) return s
            val sb = StringBuilder(s.length)
            var i = 0
            while (i < s.length) {
                val c = s[i]
                if (c.isHighSurrogate() && i + 1 < s.length && s[i + 1].isLowSurrogate()) {
                    sb.append(c).append(s[i + 1]); i += 2
                } else {
                    sb.append(if (c.isSurrogate()) '\uFFFD' else c); i += 1
                }
            }
            return sb.toString()
        }
    }
}

internal fun Any?.quoted(): String = "\"$this\""

internal class IntArrayBuilder {
    private var data = IntArray(16)
    var size = 0
        private set

    fun add(v: Int) {
        if (size == data.size) data = data.copyOf(size * 2)
        data[size++] = v
    }

    fun addAll(vs: IntArray) = vs.forEach { add(it) }
    fun toArray(): IntArray = data.copyOf(size)
}
