package dev.tfgpt2.demo

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import dev.tfgpt2.core.CausalLm
import dev.tfgpt2.core.ModelContract
import dev.tfgpt2.core.ModelFile

/**
 * [CausalLm] on LiteRT's CompiledModel API, driven only by model.json (signature and tensor names).
 *
 * The cache lives in two sets of `decode` input buffers used in turn: `decode` reads set A and
 * writes set B, the next step the other way round, so the KV cache never crosses into the JVM.
 * `prefill` writes its cache straight into set A. Not thread-safe: call from one thread
 * (the ViewModel's single inference dispatcher). The .tflite is memory-mapped from the APK's
 * assets (stored uncompressed, see `noCompress` in build.gradle.kts).
 */
class LiteRtCausalLm(
    assets: AssetManager,
    private val contract: ModelContract,
    private val file: ModelFile = contract.pick(),
    threads: Int = 4,
) : CausalLm, AutoCloseable {
    private val model = CompiledModel.create(
        assets, file.file,
        CompiledModel.Options(Accelerator.CPU).apply { cpuOptions = CompiledModel.CpuOptions(numThreads = threads) },
    )
    private val prefillLen = contract.prefillLen
    private val inputIds = model.createInputBuffer("input_ids", PREFILL)
    private val attentionMask = model.createInputBuffer("attention_mask", PREFILL)
    private val prefillLogits = model.createOutputBuffer("logits", PREFILL)
    private val tokenId = model.createInputBuffer("token_id", DECODE)
    private val decodeLogits = model.createOutputBuffer("logits", DECODE)
    private var current = CACHE.associateWith { model.createInputBuffer(it, DECODE) }
    private var next = CACHE.associateWith { model.createInputBuffer(it, DECODE) }
    private var slotsUsed = -1 // -1: no sequence

    override val vocabSize: Int = contract.vocabSize
    override val capacityLeft: Int get() = if (slotsUsed < 0) 0 else contract.maxSeqLen - slotsUsed

    override fun prefill(ids: IntArray): FloatArray {
        require(ids.isNotEmpty()) { "empty prompt" }
        require(ids.size < contract.maxSeqLen) {
            "the prompt has ${ids.size} tokens but ${file.file} holds ${contract.maxSeqLen}; shorten it or " +
                "re-export with a larger --max-seq-len"
        }
        val head = ids.copyOf(minOf(ids.size, prefillLen))
        val padded = IntArray(prefillLen) // left padding, masked out
        val mask = IntArray(prefillLen)
        head.copyInto(padded, prefillLen - head.size)
        mask.fill(1, prefillLen - head.size, prefillLen)
        inputIds.writeInt(padded)
        attentionMask.writeInt(mask)
        model.run(mapOf("input_ids" to inputIds, "attention_mask" to attentionMask),
            mapOf("logits" to prefillLogits) + current, PREFILL)
        slotsUsed = prefillLen
        var logits = prefillLogits.readFloat()
        for (i in head.size until ids.size) logits = decode(ids[i], i) // prompt longer than the prefill window
        return logits
    }

    override fun decode(id: Int, pos: Int): FloatArray {
        check(slotsUsed >= 0) { "decode before prefill" }
        check(capacityLeft > 0) { "the KV cache is full (${contract.maxSeqLen} slots)" }
        tokenId.writeInt(intArrayOf(id))
        model.run(mapOf("token_id" to tokenId) + current, mapOf("logits" to decodeLogits) + next, DECODE)
        current = next.also { next = current }
        slotsUsed++
        return decodeLogits.readFloat()
    }

    override fun reset() {
        slotsUsed = -1
    }

    override fun close() {
        (listOf(inputIds, attentionMask, prefillLogits, tokenId, decodeLogits) + current.values + next.values)
            .forEach(TensorBuffer::close)
        model.close()
    }

    private companion object {
        const val PREFILL = "prefill"
        const val DECODE = "decode"
        val CACHE = listOf("key_values", "cache_mask", "cache_index")
    }
}
