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
 * The app owns the KV cache (export/tflite.py): per layer `k_i (1, nh, S, hs)` and values
 * transposed `vt_i (1, nh, hs, S)`, plus `cache_mask (1, S)`. `prefill` returns them filled with
 * the prompt; `decode` reads them and returns only the new token's entries (`new_k`, `new_v`,
 * `(n_layer, nh, hs)`), which are written into the host copies at the next slot and uploaded to
 * the same input buffers before the next step. Not thread-safe: call from one thread (the
 * ViewModel's single inference dispatcher). The .tflite is memory-mapped from the APK's assets
 * (stored uncompressed, see `noCompress` in build.gradle.kts).
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
    private val layers = contract.nLayer
    private val heads = contract.nHead
    private val headDim = contract.nEmbd / contract.nHead
    private val slots = contract.maxSeqLen
    private val prefillLen = contract.prefillLen
    private val cacheNames = (0 until layers).map { "k_$it" } + (0 until layers).map { "vt_$it" }

    private val inputIds = model.createInputBuffer("input_ids", PREFILL)
    private val attentionMask = model.createInputBuffer("attention_mask", PREFILL)
    private val prefillOut = (listOf("logits", "cache_mask") + cacheNames).associateWith { model.createOutputBuffer(it, PREFILL) }
    private val decodeIn = (listOf("token_id", "cache_mask") + cacheNames).associateWith { model.createInputBuffer(it, DECODE) }
    private val decodeOut = listOf("logits", "new_k", "new_v").associateWith { model.createOutputBuffer(it, DECODE) }

    // host copies of the cache; uploaded to decodeIn before each step
    private val keys = Array(layers) { FloatArray(heads * slots * headDim) } // [h][s][d]
    private val valuesT = Array(layers) { FloatArray(heads * headDim * slots) } // [h][d][s]
    private val mask = IntArray(slots)
    private var slot = -1 // next free slot; -1: no sequence

    override val vocabSize: Int = contract.vocabSize
    override val capacityLeft: Int get() = if (slot < 0) 0 else slots - slot

    override fun prefill(ids: IntArray): FloatArray {
        require(ids.isNotEmpty()) { "empty prompt" }
        require(ids.size < slots) {
            "the prompt has ${ids.size} tokens but ${file.file} holds $slots; shorten it or " +
                "re-export with a larger --max-seq-len"
        }
        val head = ids.copyOf(minOf(ids.size, prefillLen))
        val padded = IntArray(prefillLen) // left padding, masked out
        val padMask = IntArray(prefillLen)
        head.copyInto(padded, prefillLen - head.size)
        padMask.fill(1, prefillLen - head.size, prefillLen)
        inputIds.writeInt(padded)
        attentionMask.writeInt(padMask)
        model.run(mapOf("input_ids" to inputIds, "attention_mask" to attentionMask), prefillOut, PREFILL)
        prefillOut.getValue("cache_mask").readInt().copyInto(mask)
        for (i in 0 until layers) {
            prefillOut.getValue("k_$i").readFloat().copyInto(keys[i])
            prefillOut.getValue("vt_$i").readFloat().copyInto(valuesT[i])
        }
        slot = prefillLen
        var logits = prefillOut.getValue("logits").readFloat()
        for (i in head.size until ids.size) logits = decode(ids[i], i) // prompt longer than the prefill window
        return logits
    }

    override fun decode(id: Int, pos: Int): FloatArray {
        check(slot >= 0) { "decode before prefill" }
        check(capacityLeft > 0) { "the KV cache is full ($slots slots)" }
        decodeIn.getValue("token_id").writeInt(intArrayOf(id))
        decodeIn.getValue("cache_mask").writeInt(mask)
        for (i in 0 until layers) {
            decodeIn.getValue("k_$i").writeFloat(keys[i])
            decodeIn.getValue("vt_$i").writeFloat(valuesT[i])
        }
        model.run(decodeIn, decodeOut, DECODE)
        val newK = decodeOut.getValue("new_k").readFloat() // [layer][h][d]
        val newV = decodeOut.getValue("new_v").readFloat()
        for (i in 0 until layers) for (h in 0 until heads) for (d in 0 until headDim) {
            val src = (i * heads + h) * headDim + d
            keys[i][(h * slots + slot) * headDim + d] = newK[src]
            valuesT[i][(h * headDim + d) * slots + slot] = newV[src]
        }
        mask[slot++] = 1
        return decodeOut.getValue("logits").readFloat()
    }

    override fun reset() {
        slot = -1
    }

    override fun close() {
        (listOf(inputIds, attentionMask) + prefillOut.values + decodeIn.values + decodeOut.values)
            .forEach(TensorBuffer::close)
        model.close()
    }

    private companion object {
        const val PREFILL = "prefill"
        const val DECODE = "decode"
    }
}
