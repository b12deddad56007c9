package dev.tfgpt2.core

/**
 * What to generate: at most [maxNewTokens], stop after any of [stopIds] (once [minNewTokens] are out).
 *
 * ```
 * val config = GenerationConfig(maxNewTokens = 64, sampling = SamplingConfig(temperature = 0.8f, topK = 40),
 *                               stopIds = setOf(50256))
 * ```
 */
data class GenerationConfig(
    val maxNewTokens: Int = 64,
    val sampling: SamplingConfig = SamplingConfig.GREEDY,
    val stopIds: Set<Int> = emptySet(),
    val minNewTokens: Int = 0,
) {
    init {
        require(maxNewTokens >= 1) { "maxNewTokens must be >= 1, got $maxNewTokens" }
        require(minNewTokens in 0..maxNewTokens) { "minNewTokens must be in [0, maxNewTokens], got $minNewTokens" }
    }
}

enum class StopReason { STOP_TOKEN, MAX_NEW_TOKENS, CONTEXT_FULL, CANCELLED }

/** The generated ids (a stop token included), why it stopped, and speed. */
class GenerationResult(
    val tokens: IntArray,
    val stopReason: StopReason,
    val prefillMillis: Double,
    val decodeSteps: Int,
    val decodeMillis: Double,
) {
    /** Decode throughput: tokens produced by `decode` calls per second (NaN before the first). */
    val tokensPerSecond: Double get() = if (decodeSteps == 0) Double.NaN else decodeSteps * 1000.0 / decodeMillis
}

/**
 * Drives any [CausalLm]: prefill once, then sample a token, decode it, repeat, until a stop token,
 * `maxNewTokens`, a full cache or cancellation. Tokens go to `onToken` as soon as they're picked.
 *
 * ```
 * val result = Generator(lm).generate(tokenizer.encode("Hello"), GenerationConfig(maxNewTokens = 20),
 *                                     isCancelled = { job.isCancelled }) { id -> print(text.push(id)) }
 * println("${result.tokensPerSecond} tok/s")
 * ```
 */
class Generator(private val lm: CausalLm, private val nanoTime: () -> Long = System::nanoTime) {

    fun generate(
        prompt: IntArray,
        config: GenerationConfig = GenerationConfig(),
        isCancelled: () -> Boolean = { false },
        onToken: (Int) -> Unit = {},
    ): GenerationResult {
        val run = start(prompt, config)
        while (true) {
            if (isCancelled()) return run.cancel()
            onToken(run.next() ?: return run.result())
        }
    }

    /** The same loop as a lazy sequence: stop iterating to stop generating (no extra decode runs). */
    fun tokens(prompt: IntArray, config: GenerationConfig = GenerationConfig()): Sequence<Int> {
        val run = start(prompt, config)
        return generateSequence { run.next() }
    }

    /** Prefills `prompt` and returns the running generation; call [Run.next] for each token. */
    fun start(prompt: IntArray, config: GenerationConfig = GenerationConfig()): Run {
        require(prompt.isNotEmpty()) { "the prompt is empty: encode some text (or the <|endoftext|> id) first" }
        for (id in prompt) require(id in 0 until lm.vocabSize) { "prompt id $id is outside the vocabulary [0, ${lm.vocabSize})" }
        lm.reset()
        return Run(prompt, config)
    }

    /** One generation in progress. A token is decoded only when the next one is asked for. */
    inner class Run internal constructor(prompt: IntArray, private val config: GenerationConfig) {
        private val sampler = Sampler(config.sampling)
        private val seen = LinkedHashSet<Int>(prompt.toList())
        private val out = IntArrayBuilder()
        private var pos = prompt.size
        private var last: Int? = null
        private var stopReason: StopReason? = null
        private var decodeNs = 0L
        private var steps = 0
        private val prefillMs: Double
        private var logits: FloatArray

        init {
            val t0 = nanoTime()
            logits = lm.prefill(prompt)
            prefillMs = (nanoTime() - t0) / 1e6
        }

        /** The next token, or null once generation has stopped (see [result]). */
        fun next(): Int? {
            if (stopReason != null) return null
            val previous = last
            if (previous != null) {
                stopReason = when {
                    previous in config.stopIds -> StopReason.STOP_TOKEN
                    out.size >= config.maxNewTokens -> StopReason.MAX_NEW_TOKENS
                    lm.capacityLeft <= 0 -> StopReason.CONTEXT_FULL
                    else -> null
                }
                if (stopReason != null) return null
                val t0 = nanoTime()
                logits = lm.decode(previous, pos++)
                decodeNs += nanoTime() - t0
                steps++
            }
            val blocked = if (out.size < config.minNewTokens) config.stopIds else emptySet()
            val token = sampler.next(logits, seen, blocked)
            out.add(token)
            seen.add(token)
            last = token
            return token
        }

        fun cancel(): GenerationResult {
            if (stopReason == null) stopReason = StopReason.CANCELLED
            return result()
        }

        fun result(): GenerationResult = GenerationResult(
            out.toArray(), stopReason ?: error("generation is still running: call next() until it returns null"),
            prefillMs, steps, decodeNs / 1e6)
    }
}

/**
 * Turns a token stream into text pieces without splitting a multi-byte UTF-8 character:
 * bytes of an incomplete character are held back until the token that completes it.
 *
 * ```
 * val text = TextStream(tokenizer)
 * generator.generate(ids, config) { id -> print(text.push(id)) }
 * ```
 */
class TextStream(private val tokenizer: Gpt2Tokenizer, private val skipIds: Set<Int> = emptySet()) {
    private val pending = java.io.ByteArrayOutputStream()

    fun push(id: Int): String {
        if (id in skipIds) return ""
        pending.write(tokenizer.decodeBytes(intArrayOf(id)))
        val bytes = pending.toByteArray()
        val complete = completeUtf8Prefix(bytes)
        pending.reset()
        pending.write(bytes, complete, bytes.size - complete)
        return String(bytes, 0, complete, Charsets.UTF_8)
    }

    /** Whatever is held back, with U+FFFD for bytes that never completed a character. */
    fun flush(): String = String(pending.toByteArray(), Charsets.UTF_8).also { pending.reset() }

    companion object {
        /** Length of the longest prefix that does not end inside a UTF-8 sequence. */
        fun completeUtf8Prefix(bytes: ByteArray): Int {
            val n = bytes.size
            for (back in 1..minOf(3, n)) {
                val b = bytes[n - back].toInt() and 0xFF
                if (b and 0xC0 == 0x80) continue // continuation byte: look further back
                val need = when {
                    b and 0xE0 == 0xC0 -> 2
                    b and 0xF0 == 0xE0 -> 3
                    b and 0xF8 == 0xF0 -> 4
                    else -> 1
                }
                return if (need > back) n - back else n
            }
            return n
        }
    }
}
