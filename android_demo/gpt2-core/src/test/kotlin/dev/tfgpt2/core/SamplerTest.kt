package dev.tfgpt2.core

import org.junit.Test
import kotlin.math.abs
import kotlin.math.exp

class SamplerTest {
    private val rng = java.util.Random(0)
    private fun randomLogits(n: Int = 50) = FloatArray(n) { (rng.nextGaussian() * 3).toFloat() }

    @Test fun greedyIsArgmaxFirstOnTies() {
        Check.equal(1, Sampler(SamplingConfig.GREEDY).next(floatArrayOf(0f, 3f, 3f, -1f)))
        repeat(50) {
            val l = randomLogits()
            Check.equal(l.indices.maxByOrNull { l[it] }, Sampler(SamplingConfig.GREEDY).next(l))
        }
    }

    @Test fun topK1AndTinyTopPAreGreedy() {
        repeat(100) { seed ->
            val l = randomLogits()
            val greedy = Sampler.argmax(l)
            Check.equal(greedy, Sampler(SamplingConfig(temperature = 1.5f, topK = 1, seed = seed.toLong())).next(l))
            Check.equal(greedy, Sampler(SamplingConfig(temperature = 1.5f, topP = 1e-6f, seed = seed.toLong())).next(l))
        }
    }

    @Test fun sameSeedSameTokensOtherSeedDiffers() {
        val l = FloatArray(100) { 0f }
        fun draw(seed: Long) = Sampler(SamplingConfig(temperature = 1f, seed = seed)).let { s -> List(40) { s.next(l) } }
        Check.equal(draw(7), draw(7))
        Check.isTrue(draw(7) != draw(8))
    }

    @Test fun frequenciesFollowSoftmaxWithTemperature() {
        val l = floatArrayOf(1f, 0f, -1f, 2f)
        val t = 0.7f
        val s = Sampler(SamplingConfig(temperature = t, seed = 1))
        val n = 40_000
        val counts = IntArray(4)
        repeat(n) { counts[s.next(l)]++ }
        val z = l.sumOf { exp(it / t.toDouble()) }
        for (i in l.indices) {
            val p = exp(l[i] / t.toDouble()) / z
            Check.isTrue(abs(counts[i].toDouble() / n - p) < 0.01, "token $i: ${counts[i].toDouble() / n} vs $p")
        }
    }

    @Test fun topKAndTopPKeepTheRightSet() {
        val l = floatArrayOf(0f, 5f, 4f, 1f, 4.5f)
        val k = Sampler(SamplingConfig(temperature = 5f, topK = 2, seed = 3))
        Check.equal(setOf(1, 4), List(2000) { k.next(l) }.toSet())
        // probabilities 0.5, 0.3, 0.2: top-p 0.7 keeps the first two (0.5 < 0.7 <= 0.8)
        val probs = floatArrayOf(kotlin.math.ln(0.5f), kotlin.math.ln(0.3f), kotlin.math.ln(0.2f))
        val p = Sampler(SamplingConfig(temperature = 1f, topP = 0.7f, seed = 4))
        Check.equal(setOf(0, 1), List(2000) { p.next(probs) }.toSet())
    }

    @Test fun repetitionPenaltyHfSemantics() {
        val l = floatArrayOf(2f, 1.5f, -1f)
        val s = Sampler(SamplingConfig(repetitionPenalty = 2f))
        Check.equal(1, s.next(l, seen = listOf(0)))     // 2 / 2 = 1 < 1.5
        Check.equal(0, s.next(l, seen = listOf(2)))     // negative logits are multiplied, never helped
        Check.equal(1, s.next(l, blocked = setOf(0)))
    }

    @Test fun badConfigsSayWhatIsAllowed() {
        Check.throws(IllegalArgumentException::class.java, "topP must be in (0, 1]") { SamplingConfig(topP = 0f) }
        Check.throws(IllegalArgumentException::class.java, "temperature must be >= 0") { SamplingConfig(temperature = -1f) }
        Check.throws(IllegalArgumentException::class.java, "topK must be >= 0") { SamplingConfig(topK = -2) }
        Check.throws(IllegalArgumentException::class.java, "repetitionPenalty") { SamplingConfig(repetitionPenalty = 0f) }
    }
}
