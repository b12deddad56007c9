package dev.tfgpt2.core

/**
 * A causal language model with a KV cache, as the exported `prefill`/`decode` signatures offer it
 * (docs/export.md, the TFLite cache contract). The app implements it on LiteRT; tests implement it by replaying
 * logits recorded from the real .tflite in Python.
 *
 * ```
 * val lm: CausalLm = ReplayLm(...)           // or LiteRtCausalLm in the app
 * var logits = lm.prefill(intArrayOf(464, 318))
 * logits = lm.decode(Sampler.argmax(logits), pos = 2)
 * ```
 */
interface CausalLm {
    /** Length of the logits arrays. */
    val vocabSize: Int

    /** How many more tokens `decode` can take before the cache is full (0 = full). */
    val capacityLeft: Int

    /** Starts a new sequence: fills the cache with `ids` and returns the logits after the last id. */
    fun prefill(ids: IntArray): FloatArray

    /** Appends `id` at position `pos` (= tokens so far) and returns the next-token logits. */
    fun decode(id: Int, pos: Int): FloatArray

    /** Forgets the sequence; the next call must be `prefill`. */
    fun reset()
}
