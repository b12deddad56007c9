package dev.tfgpt2.core

/** One input or output tensor of a signature, as the LiteRT runner sees it. */
data class TensorSpec(val name: String, val dtype: String, val shape: List<Int>)

/** One exported `gpt2_<recipe>.litertlm` file: what LiteRT-LM's Engine opens. */
data class LitertlmFile(
    val file: String,
    val recipe: String,
    /** The KV cache slots: prompt + generated tokens (LiteRT-LM's `maxNumTokens`). */
    val maxNumTokens: Int,
    /** The file's sha256 in model.json, checked after copying it out of the APK. */
    val sha256: String?,
)

/**
 * `model.json`, the contract `tfgpt2 export` writes beside the models; the app reads it to find the
 * `.litertlm` it runs. Parsing checks the model's decode signature against the config (logits and
 * per-layer caches in LiteRT-LM's layout) and fails with a [ModelContractException] that says what is
 * wrong and how to fix it.
 *
 * ```
 * val contract = ModelContract.parse(File("model.json").readText())
 * val model = contract.pick()          // int8 if exported, else int4, else fp32
 * EngineConfig(modelPath = ..., maxNumTokens = model.maxNumTokens)
 * ```
 */
data class ModelContract(
    val formatVersion: Int,
    val vocabSize: Int,
    val nLayer: Int,
    val nHead: Int,
    val nEmbd: Int,
    val eosTokenId: Int?,
    val models: Map<String, LitertlmFile>,
) {
    /** The first exported recipe in `preference` order. */
    fun pick(vararg preference: String = arrayOf("int8", "int4", "fp32")): LitertlmFile =
        preference.firstNotNullOfOrNull { r -> models.values.firstOrNull { it.recipe == r } }
            ?: models.values.firstOrNull()
            ?: throw ModelContractException("model.json lists no .litertlm model; re-run `tfgpt2 export --android …`")

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
            val shape = Shape(int(cfg, "vocab_size", ".config"), int(cfg, "n_layer", ".config"),
                int(cfg, "n_head", ".config"), int(cfg, "n_embd", ".config"))
            val special = top["special_tokens"] as? Map<*, *> ?: emptyMap<String, Any?>()
            val hashes = (top["sha256"] as? Map<*, *>)?.entries?.associate { (k, v) -> str(k, ".sha256") to str(v, ".sha256.$k") }
                ?: emptyMap()
            val section = top["litertlm"] ?: fail(".litertlm", "is missing (an export without --formats litertlm)")
            val models = obj(section, ".litertlm").entries.associate { (k, v) ->
                val file = str(k, ".litertlm key")
                file to model(file, obj(v, ".litertlm.$file"), shape, hashes[file])
            }
            if (models.isEmpty()) fail(".litertlm", "is empty")
            return ModelContract(version, shape.vocab, shape.layers, shape.heads, shape.width,
                (special["eos_token_id"] as? Long)?.toInt(), models)
        }

        data class Shape(val vocab: Int, val layers: Int, val heads: Int, val width: Int)

        fun model(file: String, m: Map<*, *>, c: Shape, sha256: String?): LitertlmFile {
            val path = ".litertlm.$file"
            val slots = int(m, "max_num_tokens", path)
            val decode = obj(obj(m["signatures"], "$path.signatures")["decode"], "$path.signatures.decode")
            val headDim = c.width / c.heads
            val want = mapOf("logits" to listOf(1, 1, c.vocab)) + (0 until c.layers).flatMap { i ->
                listOf("kv_cache_k_$i" to listOf(1, c.heads, slots, headDim), "kv_cache_v_$i" to listOf(1, c.heads, headDim, slots))
            }
            val outputs = tensors(decode["outputs"], "$path.signatures.decode.outputs")
            for ((name, expected) in want) {
                val t = outputs[name] ?: fail("$path.signatures.decode.outputs", "lacks \"$name\"")
                if (t.dtype != "float32" || t.shape != expected) {
                    fail("$path.signatures.decode.outputs.$name", "is ${t.dtype}${t.shape} but the config implies float32$expected")
                }
            }
            return LitertlmFile(file, str(m["recipe"], "$path.recipe"), slots, sha256)
        }

        fun tensors(v: Any?, path: String): Map<String, TensorSpec> = obj(v, path).entries.associate { (k, t) ->
            val name = str(k, "$path key")
            val spec = obj(t, "$path.$name")
            val shape = (spec["shape"] as? List<*>)?.map { (it as? Long)?.toInt() ?: fail("$path.$name.shape", "must list integers") }
                ?: fail("$path.$name.shape", "is missing")
            name to TensorSpec(name, str(spec["dtype"], "$path.$name.dtype"), shape)
        }
    }
}

class ModelContractException(message: String) : IllegalArgumentException(message)
