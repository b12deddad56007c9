package dev.tfgpt2.core

import kotlin.math.exp

/**
 * How the next token is picked; the same meaning as HF `generate` arguments.
 * `temperature == 0` is greedy (argmax, first index on ties); `topK == 0` and `topP == 1` disable
 * those filters; `repetitionPenalty` divides positive and multiplies negative logits of tokens seen
 * in the prompt or output (HF semantics). `seed` makes sampling repeatable.
 *
 * ```
 * val config = SamplingConfig(temperature = 0.8f, topK = 40, topP = 0.95f, seed = 7)
 * ```
 */
data class SamplingConfig(
    val temperature: Float = 0f,
    val topK: Int = 0,
    val topP: Float = 1f,
    val repetitionPenalty: Float = 1f,
    val seed: Long = 0,
) {
    init {
        require(temperature >= 0f && temperature.isFinite()) { "temperature must be >= 0 (0 = greedy), got $temperature" }
        require(topK >= 0) { "topK must be >= 0 (0 = off), got $topK" }
        require(topP > 0f && topP <= 1f) { "topP must be in (0, 1] (1 = off), got $topP" }
        require(repetitionPenalty > 0f && repetitionPenalty.isFinite()) {
            "repetitionPenalty must be > 0 (1 = off), got $repetitionPenalty"
        }
    }

    val greedy: Boolean get() = temperature == 0f

    companion object {
        val GREEDY = SamplingConfig()
    }
}

/**
 * Picks tokens from logits per [SamplingConfig]. Holds the seeded RNG, so one Sampler per generation.
 *
 * ```
 * val sampler = Sampler(SamplingConfig(temperature = 0.7f, topK = 40, seed = 1))
 * val token = sampler.next(floatArrayOf(0.1f, 2.0f, -1.0f))
 * ```
 */
class Sampler(val config: SamplingConfig) {
    private val rng = SplitMix64(config.seed)

    /** Next token id; `seen` feeds the repetition penalty; `blocked` ids get probability 0. */
    fun next(logits: FloatArray, seen: Collection<Int> = emptyList(), blocked: Set<Int> = emptySet()): Int {
        require(logits.isNotEmpty()) { "empty logits" }
        val scores = logits.copyOf()
        if (config.repetitionPenalty != 1f) {
            for (id in seen.toSet()) if (id in scores.indices) {
                val s = scores[id]
                scores[id] = if (s < 0f) s * config.repetitionPenalty else s / config.repetitionPenalty
            }
        }
        for (id in blocked) if (id in scores.indices) scores[id] = Float.NEGATIVE_INFINITY
        if (config.greedy) return argmax(scores)
        for (i in scores.indices) scores[i] /= config.temperature
        val order = scores.indices.sortedByDescending { scores[it] }
        var keep = if (config.topK > 0) minOf(config.topK, order.size) else order.size
        if (config.topK > 0) { // keep ties with the k-th score, as HF's `logits < kth` filter does
            val kth = scores[order[keep - 1]]
            while (keep < order.size && scores[order[keep]] == kth) keep++
        }
        val probs = softmax(DoubleArray(keep) { scores[order[it]].toDouble() })
        if (config.topP < 1f) { // smallest prefix whose mass reaches topP (at least one token)
            var mass = 0.0
            var n = 0
            while (n < keep) { mass += probs[n]; n++; if (mass >= config.topP) break }
            keep = n
        }
        val total = (0 until keep).sumOf { probs[it] }
        if (total <= 0.0 || total.isNaN()) return order[0]
        var u = rng.nextDouble() * total
        for (i in 0 until keep) {
            u -= probs[i]
            if (u < 0) return order[i]
        }
        return order[keep - 1]
    }

    companion object {
        fun argmax(values: FloatArray): Int {
            var best = 0
            for (i in 1 until values.size) if (values[i] > values[best]) best = i
            return best
        }

        fun softmax(x: DoubleArray): DoubleArray {
            val max = x.maxOrNull() ?: return x
            if (max == Double.NEGATIVE_INFINITY) return DoubleArray(x.size)
            val e = DoubleArray(x.size) { exp(x[it] - max) }
            val sum = e.sum()
            return DoubleArray(x.size) { e[it] / sum }
        }
    }
}

/** SplitMix64: a tiny, well-mixed, seedable generator (same seed, same stream on every JVM and ART). */
class SplitMix64(seed: Long) {
    private var state = seed

    fun nextLong(): Long {
        state += -0x61c8864680b583ebL
        var z = state
        z = (z xor (z ushr 30)) * -0x40a7b892e31b1a47L
        z = (z xor (z ushr 27)) * -0x6b2fb644ecceee15L
        return z xor (z ushr 31)
    }

    /** Uniform in [0, 1) with 53 random bits. */
    fun nextDouble(): Double = (nextLong() ushr 11) * (1.0 / (1L shl 53))
}
