package dev.tfgpt2.core

import org.junit.Test

class ModelContractTest {
    // the contract of tools/write_goldens.py's export: .tflite fp32/int8 and the int8 .litertlm the app runs
    private val text = Golden.file("tests/golden/model.json").readText()

    @Test fun readsTheExportedContract() {
        val c = ModelContract.parse(text)
        val raw = Json.parse(text) as Map<*, *>
        Check.equal(1, c.formatVersion)
        Check.equal(((raw["config"] as Map<*, *>)["vocab_size"] as Long).toInt(), c.vocabSize)
        Check.equal(setOf("gpt2_int8.litertlm"), c.models.keys)
        val model = c.pick()
        Check.equal("gpt2_int8.litertlm", model.file)
        Check.equal("int8", model.recipe)
        Check.equal(((raw["max_seq_len"] as Long).toInt()), model.maxNumTokens)
        Check.equal(((raw["sha256"] as Map<*, *>)["gpt2_int8.litertlm"] as String), model.sha256)
        Check.equal("gpt2_int8.litertlm", c.pick("fp32").file) // the only file, whatever is preferred
    }

    @Test fun malformedFilesGetClearErrors() {
        Check.throws(ModelContractException::class.java, "not valid JSON") { ModelContract.parse(text.dropLast(3)) }
        Check.throws(ModelContractException::class.java, "format_version is 2") {
            ModelContract.parse(text.replace("\"format_version\": 1", "\"format_version\": 2"))
        }
        Check.throws(ModelContractException::class.java, "lacks \"kv_cache_k_1\"") {
            ModelContract.parse(text.replace("\"kv_cache_k_1\"", "\"kv_cache_q_1\""))
        }
        Check.throws(ModelContractException::class.java, "config implies") {
            ModelContract.parse(text.replace("\"max_num_tokens\": 24", "\"max_num_tokens\": 32"))
        }
        Check.throws(ModelContractException::class.java, ".config.n_head is missing") {
            ModelContract.parse(text.replace("\"n_head\"", "\"heads\""))
        }
        Check.throws(ModelContractException::class.java, ".litertlm is missing") {
            ModelContract.parse(text.replace("\"litertlm\":", "\"litert\":"))
        }
    }
}
