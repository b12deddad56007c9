package dev.tfgpt2.core

import org.junit.Test

class ModelContractTest {
    private val text = Golden.file("tests/golden/model.json").readText()

    @Test fun readsTheExportedContract() {
        val c = ModelContract.parse(text)
        val raw = Json.parse(text) as Map<*, *>
        Check.equal(1, c.formatVersion)
        Check.equal(((raw["config"] as Map<*, *>)["vocab_size"] as Long).toInt(), c.vocabSize)
        Check.equal(setOf("gpt2_fp32.tflite", "gpt2_int8.tflite"), c.models.keys)
        Check.equal("gpt2_int8.tflite", c.pick().file)
        Check.equal("gpt2_fp32.tflite", c.pick("fp32").file)
        Check.equal(listOf(1, c.nHead, c.maxSeqLen, c.nEmbd / c.nHead), c.pick().decode.inputs.getValue("k_0").shape)
        Check.equal(listOf(1, c.nHead, c.nEmbd / c.nHead, c.maxSeqLen), c.pick().decode.inputs.getValue("vt_1").shape)
        Check.equal(listOf(c.nLayer, c.nHead, c.nEmbd / c.nHead), c.pick().decode.outputs.getValue("new_v").shape)
        Check.isTrue(c.vocabFile.endsWith("vocab.json") && c.mergesFile.endsWith("merges.txt"))
        Check.isTrue(c.sha256.containsKey("gpt2_int8.tflite"))
    }

    @Test fun malformedFilesGetClearErrors() {
        Check.throws(ModelContractException::class.java, "not valid JSON") { ModelContract.parse(text.dropLast(3)) }
        Check.throws(ModelContractException::class.java, "format_version is 2") {
            ModelContract.parse(text.replace("\"format_version\": 1", "\"format_version\": 2"))
        }
        Check.throws(ModelContractException::class.java, "lacks \"new_k\"") {
            ModelContract.parse(text.replace("\"new_k\"", "\"kv\""))
        }
        Check.throws(ModelContractException::class.java, "config implies") {
            ModelContract.parse(text.replace("\"max_seq_len\": 24", "\"max_seq_len\": 32"))
        }
        Check.throws(ModelContractException::class.java, ".config.n_head is missing") {
            ModelContract.parse(text.replace("\"n_head\"", "\"heads\""))
        }
    }
}
