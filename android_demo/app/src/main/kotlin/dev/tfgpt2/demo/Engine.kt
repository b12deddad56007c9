package dev.tfgpt2.demo

import android.content.res.AssetManager
import dev.tfgpt2.core.GenerationConfig
import dev.tfgpt2.core.GenerationResult
import dev.tfgpt2.core.Generator
import dev.tfgpt2.core.Gpt2Tokenizer
import dev.tfgpt2.core.ModelContract
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.isActive

/** What a generation emits: each token as it's picked, then the result (stop reason, speed). */
sealed interface GenerationEvent {
    data class Token(val id: Int) : GenerationEvent
    class Done(val result: GenerationResult) : GenerationEvent
}

/** Tokenizer + LiteRT model, loaded from the assets `tfgpt2 export --android` wrote. */
class Engine(assets: AssetManager, threads: Int) : AutoCloseable {
    val contract: ModelContract = ModelContract.parse(
        assets.open(MODEL_JSON).use { it.readBytes().toString(Charsets.UTF_8) })
    val tokenizer: Gpt2Tokenizer = Gpt2Tokenizer.fromText(
        assets.open(contract.vocabFile).use { it.readBytes().toString(Charsets.UTF_8) },
        assets.open(contract.mergesFile).use { it.readBytes().toString(Charsets.UTF_8) },
        contract.vocabFile,
    )
    val lm = LiteRtCausalLm(assets, contract, threads = threads)
    private val generator = Generator(lm)

    /** The blocking [Generator] loop as a cold Flow; cancelling the collector stops the loop. */
    fun generate(prompt: IntArray, config: GenerationConfig): Flow<GenerationEvent> = callbackFlow {
        val result = generator.generate(prompt, config, isCancelled = { !isActive }) { id ->
            trySendBlocking(GenerationEvent.Token(id))
        }
        trySendBlocking(GenerationEvent.Done(result))
        close()
        awaitClose()
    }

    override fun close() = lm.close()

    companion object {
        const val MODEL_JSON = "model.json"
    }
}
