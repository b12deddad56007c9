package dev.tfgpt2.core

/** LiteRT-LM's sampler arguments (its `SamplerConfig`). */
data class SamplerArgs(val topK: Int, val topP: Double, val temperature: Double, val seed: Int)

/**
 * The app's generation settings, checked where they are set. LiteRT-LM samples; its CPU executor
 * implements only the top-p sampler, so greedy decoding is top-k 1 there (temperature 0 here).
 */
data class Sampling(
    val maxNewTokens: Int = 64,
    val temperature: Double = 0.8,
    val topK: Int = 40,
    val topP: Double = 0.95,
    val seed: Int = 0,
) {
    init {
        require(maxNewTokens >= 1) { "max new tokens must be at least 1, got $maxNewTokens" }
        require(temperature >= 0.0 && temperature.isFinite()) { "temperature must be >= 0, got $temperature" }
        require(topK >= 1) { "top-k must be at least 1, got $topK" }
        require(topP > 0.0 && topP <= 1.0) { "top-p must be in (0, 1], got $topP" }
    }

    val greedy: Boolean get() = temperature == 0.0 || topK == 1

    fun samplerArgs(): SamplerArgs =
        if (greedy) SamplerArgs(topK = 1, topP = 1.0, temperature = 1.0, seed = seed)
        else SamplerArgs(topK, topP, temperature, seed)
}
