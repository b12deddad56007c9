package dev.tfgpt2.core

import org.junit.Test

class SamplingTest {
    @Test fun greedyIsTopKOne() {
        Check.equal(SamplerArgs(1, 1.0, 1.0, 7), Sampling(temperature = 0.0, seed = 7).samplerArgs())
        Check.equal(SamplerArgs(1, 1.0, 1.0, 0), Sampling(topK = 1, temperature = 0.9).samplerArgs())
        Check.equal(SamplerArgs(40, 0.95, 0.8, 3), Sampling(seed = 3).samplerArgs())
        Check.isTrue(Sampling(temperature = 0.0).greedy && !Sampling().greedy)
    }

    @Test fun badSettingsAreRefused() {
        Check.throws(IllegalArgumentException::class.java, "temperature") { Sampling(temperature = -0.1) }
        Check.throws(IllegalArgumentException::class.java, "top-k") { Sampling(topK = 0) }
        Check.throws(IllegalArgumentException::class.java, "top-p") { Sampling(topP = 0.0) }
        Check.throws(IllegalArgumentException::class.java, "top-p") { Sampling(topP = 1.5) }
        Check.throws(IllegalArgumentException::class.java, "max new tokens") { Sampling(maxNewTokens = 0) }
    }
}
