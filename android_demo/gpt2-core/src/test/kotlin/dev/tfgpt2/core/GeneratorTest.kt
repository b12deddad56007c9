package dev.tfgpt2.core

import org.junit.Test

/** Replays logits that Python recorded from the exported .tflite in the LiteRT interpreter. */
class ReplayLm(record: Map<*, *>) : CausalLm {
    val prompt = (record["prompt"] as List<*>).map { (it as Long).toInt() }.toIntArray()
    val tokens = (record["tokens"] as List<*>).map { (it as Long).toInt() }.toIntArray()
    private val rows = (record["logits"] as List<*>).map { row ->
        (row as List<*>).map { (it as Number).toFloat() }.toFloatArray()
    }
    private val capacity = (record["capacity_after_prefill"] as Long).toInt()
    var decodes = 0
        private set
    private var prefilled = false

    override val vocabSize = rows[0].size
    override val capacityLeft get() = capacity - decodes

    override fun prefill(ids: IntArray): FloatArray {
        Check.arrays(prompt, ids, "prefill got another prompt")
        prefilled = true
        return rows[0]
    }

    override fun decode(id: Int, pos: Int): FloatArray {
        Check.isTrue(prefilled, "decode before prefill")
        Check.equal(tokens[decodes], id, "decode step $decodes got another token than Python's LiteRT greedy")
        Check.equal(prompt.size + decodes, pos, "decode step $decodes position")
        check(capacityLeft > 0) { "decode past the cache capacity" }
        return rows[++decodes]
    }

    override fun reset() { prefilled = false; decodes = 0 }
}

class GeneratorTest {
    private fun replay(recipe: String) = ReplayLm(Golden.json("tests/golden/replay_$recipe.json"))

    @Test fun greedyReproducesPythonLiteRtTokensUntilTheCacheIsFull() {
        for (recipe in listOf("fp32", "int8")) {
            val lm = replay(recipe)
            val seen = ArrayList<Int>()
            val result = Generator(lm).generate(lm.prompt, GenerationConfig(maxNewTokens = 1000)) { seen.add(it) }
            Check.arrays(lm.tokens, result.tokens, recipe)
            Check.equal(lm.tokens.toList(), seen)
            Check.equal(StopReason.CONTEXT_FULL, result.stopReason)
            Check.equal(lm.tokens.size - 1, result.decodeSteps)
            println("replay $recipe: ${result.tokens.size} greedy tokens == Python LiteRT ${lm.tokens.toList()}")
        }
    }

    @Test fun maxNewTokensStopsWithoutAnExtraDecode() {
        val lm = replay("fp32")
        val result = Generator(lm).generate(lm.prompt, GenerationConfig(maxNewTokens = 5))
        Check.arrays(lm.tokens.copyOf(5), result.tokens)
        Check.equal(StopReason.MAX_NEW_TOKENS, result.stopReason)
        Check.equal(4, lm.decodes)
    }

    @Test fun stopTokenEndsAndMinNewTokensDelaysIt() {
        val lm = replay("fp32")
        val stop = lm.tokens[2]
        val first = lm.tokens.indexOf(stop)
        val result = Generator(lm).generate(lm.prompt, GenerationConfig(maxNewTokens = 100, stopIds = setOf(stop)))
        Check.arrays(lm.tokens.copyOf(first + 1), result.tokens)
        Check.equal(StopReason.STOP_TOKEN, result.stopReason)
        val lm2 = FixedLm(floatArrayOf(0f, 5f, 1f), capacity = 100)
        val delayed = Generator(lm2).generate(intArrayOf(0), GenerationConfig(maxNewTokens = 10, stopIds = setOf(1), minNewTokens = 3))
        Check.arrays(intArrayOf(2, 2, 2, 1), delayed.tokens)
    }

    @Test fun cancellationStopsPromptly() {
        val lm = replay("int8")
        var emitted = 0
        val result = Generator(lm).generate(lm.prompt, GenerationConfig(maxNewTokens = 100), isCancelled = { emitted >= 3 }) { emitted++ }
        Check.equal(StopReason.CANCELLED, result.stopReason)
        Check.arrays(lm.tokens.copyOf(3), result.tokens)
        Check.equal(2, lm.decodes)
    }

    @Test fun sequenceIsLazy() {
        val lm = replay("fp32")
        val first = Generator(lm).tokens(lm.prompt, GenerationConfig(maxNewTokens = 100)).take(4).toList()
        Check.equal(lm.tokens.take(4), first)
        Check.equal(3, lm.decodes)
    }

    @Test fun speedComesFromTheClock() {
        var now = 0L
        val lm = FixedLm(floatArrayOf(1f, 0f), capacity = 100) { now += 10_000_000L } // 10 ms per call
        val result = Generator(lm) { now }.generate(intArrayOf(1), GenerationConfig(maxNewTokens = 11))
        Check.equal(10, result.decodeSteps)
        Check.isTrue(kotlin.math.abs(result.tokensPerSecond - 100.0) < 1e-9, "${result.tokensPerSecond}")
        Check.isTrue(kotlin.math.abs(result.prefillMillis - 10.0) < 1e-9)
    }

    @Test fun badPromptsSayWhy() {
        val lm = replay("fp32")
        Check.throws(IllegalArgumentException::class.java, "prompt is empty") { Generator(lm).generate(IntArray(0)) }
        Check.throws(IllegalArgumentException::class.java, "outside the vocabulary") { Generator(lm).generate(intArrayOf(5000)) }
        Check.throws(IllegalArgumentException::class.java, "maxNewTokens must be >= 1") { GenerationConfig(maxNewTokens = 0) }
    }

    @Test fun textStreamNeverSplitsACharacter() {
        val tok = Golden.tokenizer
        val text = "héllo 👋🏽 世界 done"
        val stream = TextStream(tok)
        val pieces = tok.encode(text).map { stream.push(it) }
        Check.equal(text, pieces.joinToString("") + stream.flush())
        Check.isTrue(pieces.none { it.contains('\uFFFD') }, "a piece held half a character: $pieces")
        Check.isTrue(pieces.count { it.isEmpty() } > 0, "the emoji should span tokens")
        Check.equal("", TextStream(tok, skipIds = setOf(50256)).push(50256))
    }
}

/** Always the same logits; `onCall` runs on each prefill/decode (e.g. to advance a fake clock). */
class FixedLm(private val logits: FloatArray, private val capacity: Int, private val onCall: () -> Unit = {}) : CausalLm {
    private var used = 0
    override val vocabSize = logits.size
    override val capacityLeft get() = capacity - used
    override fun prefill(ids: IntArray): FloatArray { onCall(); return logits }
    override fun decode(id: Int, pos: Int): FloatArray { onCall(); used++; return logits }
    override fun reset() { used = 0 }
}
