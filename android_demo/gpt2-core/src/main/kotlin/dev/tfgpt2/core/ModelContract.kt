package dev.tfgpt2.core

/** One input or output tensor of a signature, as the LiteRT runner sees it. */
data class TensorSpec(val name: String, val dtype: String, val shape: List<Int>) {
    val elements: Int get() = shape.fold(1) { a, b -> a * b }
}

/** A TFLite signature: its key and its named inputs/outputs. */
data class SignatureSpec(val name: String, val inputs: Map<String, TensorSpec>, val outputs: Map<String, TensorSpec>)

/** One exported .tflite file (`gpt2_<recipe>.tflite`) and its signatures. */
data class ModelFile(val file: String, val recipe: String, val signatures: Map<String, SignatureSpec>) {
    val prefill: SignatureSpec get() = signatures.getValue("prefill")
    val decode: SignatureSpec get() = signatures.getValue("decode")
}

/**
 * `model.json`, the contract `tfgpt2 export` writes beside the models; the app reads only this file
 * to drive them. Parsing checks every tensor the runner needs, with shapes consistent with the
 * config, and fails with a [ModelContractException] that says what is wrong and how to fix it.
 *
 * ```
 * val contract = ModelContract.parse(File("model.json").readText())
 * val model = contract.pick()                       // int8 if exported, else fp16, else fp32
 * val k0 = model.decode.inputs.getValue("k_0").shape  // (1, n_head, max_seq_len, head_dim)
 * ```
 */
data class ModelContract(
    val formatVersion: Int,
    val vocabSize: Int,
    val nLayer: Int,
    val nHead: Int,
    val nEmbd: Int,
    val maxSeqLen: Int,
    val prefillLen: Int,
    val eosTokenId: Int?,
    val vocabFile: String,
    val mergesFile: String,
    val models: Map<String, ModelFile>,
    val sha256: Map<String, String>,
) {
    /** The first exported recipe in `preference` order. */
    fun pick(vararg preference: String = arrayOf("int8", "fp16", "fp32")): ModelFile =
        preference.firstNotNullOfOrNull { r -> models.values.firstOrNull { it.recipe == r } }
            ?: models.values.firstOrNull()
            ?: throw ModelContractException("model.json lists no models; re-run `tfgpt2 export`")

    companion object {
        const val SUPPORTED_FORMAT = 1

        fun parse(text: String): ModelContract {
            val root = try {
                Json.parse(text)
            } catch (e: Json.ParseException) {
                throw ModelContractException("model.json is not valid JSON (${e.message}); re-run `tfgpt2 export`")
            }
            return Reader(root).contract()
        }
    }

    private class Reader(val root: Any?) {
        fun fail(path: String, what: String): Nothing =
            throw ModelContractException("model.json: $path $what; re-export with `tfgpt2 export --android …`")

        fun obj(v: Any?, path: String): Map<*, *> = v as? Map<*, *> ?: fail(path, "must be an object")
        fun int(m: Map<*, *>, key: String, path: String): Int =
            (m[key] as? Long)?.toInt() ?: fail("$path.$key", if (key in m) "must be an integer" else "is missing")
        fun str(v: Any?, path: String): String = v as? String ?: fail(path, "must be a string")

        fun contract(): ModelContract {
            val top = obj(root, "the top level")
            val version = int(top, "format_version", "")
            if (version != SUPPORTED_FORMAT) {
                fail(".format_version", "is $version but this app reads format $SUPPORTED_FORMAT")
            }
            val cfg = obj(top["config"], ".config")
            val vocab = int(cfg, "vocab_size", ".config")
            val nLayer = int(cfg, "n_layer", ".config")
            val nHead = int(cfg, "n_head", ".config")
            val nEmbd = int(cfg, "n_embd", ".config")
            val maxSeq = int(top, "max_seq_len", "")
            val prefillLen = int(top, "prefill_len", "")
            if (prefillLen !in 1 until maxSeq) fail(".prefill_len", "must be in [1, max_seq_len)")
            val special = top["special_tokens"] as? Map<*, *> ?: emptyMap<String, Any?>()
            val eos = (special["eos_token_id"] as? Long)?.toInt()
            val files = (obj(top["tokenizer"], ".tokenizer")["files"] as? List<*>)?.map { str(it, ".tokenizer.files[]") }
                ?: fail(".tokenizer.files", "is missing")
            val vocabFile = files.firstOrNull { it.endsWith("vocab.json") } ?: fail(".tokenizer.files", "has no vocab.json")
            val mergesFile = files.firstOrNull { it.endsWith("merges.txt") } ?: fail(".tokenizer.files", "has no merges.txt")
            val models = obj(top["models"], ".models").entries.associate { (k, v) ->
                val file = str(k, ".models key")
                file to model(file, obj(v, ".models.$file"))
            }
            if (models.isEmpty()) fail(".models", "is empty")
            val hashes = (top["sha256"] as? Map<*, *>)?.entries?.associate { (k, v) -> str(k, ".sha256") to str(v, ".sha256.$k") }
                ?: emptyMap()
            val contract = ModelContract(version, vocab, nLayer, nHead, nEmbd, maxSeq, prefillLen, eos,
                vocabFile, mergesFile, models, hashes)
            models.values.forEach { check(contract, it) }
            return contract
        }

        fun model(file: String, m: Map<*, *>): ModelFile {
            val recipe = str(m["recipe"], ".models.$file.recipe")
            val sigs = obj(m["signatures"], ".models.$file.signatures").entries.associate { (k, v) ->
                val name = str(k, ".models.$file.signatures key")
                val path = ".models.$file.signatures.$name"
                val s = obj(v, path)
                name to SignatureSpec(name, tensors(s["inputs"], "$path.inputs"), tensors(s["outputs"], "$path.outputs"))
            }
            return ModelFile(file, recipe, sigs)
        }

        fun tensors(v: Any?, path: String): Map<String, TensorSpec> = obj(v, path).entries.associate { (k, t) ->
            val name = str(k, "$path key")
            val spec = obj(t, "$path.$name")
            val shape = (spec["shape"] as? List<*>)?.map { (it as? Long)?.toInt() ?: fail("$path.$name.shape", "must list integers") }
                ?: fail("$path.$name.shape", "is missing")
            name to TensorSpec(name, str(spec["dtype"], "$path.$name.dtype"), shape)
        }

        /** The tensors LiteRtCausalLm uses, with the shapes the config implies (see export/tflite.py). */
        fun check(c: ModelContract, m: ModelFile) {
            val headDim = c.nEmbd / c.nHead
            val caches = (0 until c.nLayer).flatMap { i ->
                listOf("k_$i" to ("float32" to listOf(1, c.nHead, c.maxSeqLen, headDim)),
                    "vt_$i" to ("float32" to listOf(1, c.nHead, headDim, c.maxSeqLen)))
            }.toMap()
            val logits = "logits" to ("float32" to listOf(1, c.vocabSize))
            val mask = "cache_mask" to ("int32" to listOf(1, c.maxSeqLen))
            val newEntry = "float32" to listOf(c.nLayer, c.nHead, headDim)
            val want = mapOf(
                "prefill" to (mapOf("input_ids" to ("int32" to listOf(1, c.prefillLen)),
                    "attention_mask" to ("int32" to listOf(1, c.prefillLen))) to mapOf(logits, mask) + caches),
                "decode" to (mapOf("token_id" to ("int32" to listOf(1)), mask) + caches to
                    mapOf(logits, "new_k" to newEntry, "new_v" to newEntry)),
            )
            for ((sig, io) in want) {
                val spec = m.signatures[sig] ?: fail(".models.${m.file}.signatures", "lacks the \"$sig\" signature")
                for ((kind, expected) in listOf("inputs" to io.first, "outputs" to io.second)) {
                    val actual = if (kind == "inputs") spec.inputs else spec.outputs
                    for ((name, dt) in expected) {
                        val path = ".models.${m.file}.signatures.$sig.$kind"
                        val t = actual[name] ?: fail(path, "lacks \"$name\"")
                        if (t.dtype != dt.first || t.shape != dt.second) {
                            fail("$path.$name", "is ${t.dtype}${t.shape} but the config implies ${dt.first}${dt.second}")
                        }
                    }
                }
            }
        }
    }
}

class ModelContractException(message: String) : IllegalArgumentException(message)
