package dev.tfgpt2.demo

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.tfgpt2.core.GenerationConfig
import dev.tfgpt2.core.SamplingConfig
import dev.tfgpt2.core.StopReason
import dev.tfgpt2.core.TextStream
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ExperimentalCoroutinesApi
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.flowOn
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

data class Settings(
    val maxNewTokens: Int = 64,
    val temperature: Float = 0.8f,
    val topK: Int = 40,
    val topP: Float = 0.95f,
)

data class UiState(
    val status: String = "Loading model…",
    val ready: Boolean = false,
    val running: Boolean = false,
    val output: String = "",
    val tokensPerSecond: Double? = null,
    val settings: Settings = Settings(),
)

/** Loads the engine off the main thread, streams generated text into [state], stops on request. */
class GenerateViewModel(app: Application) : AndroidViewModel(app) {
    @OptIn(ExperimentalCoroutinesApi::class)
    private val inference = Dispatchers.Default.limitedParallelism(1) // one thread owns the interpreter
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()
    private var engine: Engine? = null
    private var job: Job? = null

    init {
        viewModelScope.launch {
            try {
                val threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
                val loaded = withContext(inference) { Engine(getApplication<Application>().assets, threads) }
                engine = loaded
                val file = loaded.contract.pick()
                _state.update { it.copy(ready = true, status = "${file.file} (${file.recipe}), ${loaded.contract.maxSeqLen}-token window") }
            } catch (e: Exception) {
                _state.update { it.copy(status = "Could not load the model: ${e.message}. Export one with " +
                    "`tfgpt2 export --model … --android android_demo/app/src/main/assets` and rebuild.") }
            }
        }
    }

    fun updateSettings(settings: Settings) = _state.update { it.copy(settings = settings) }

    fun generate(prompt: String) {
        val engine = engine ?: return
        job?.cancel()
        val s = _state.value.settings
        val eos = engine.contract.eosTokenId
        val config = GenerationConfig(
            maxNewTokens = s.maxNewTokens,
            sampling = SamplingConfig(temperature = s.temperature, topK = s.topK, topP = s.topP, seed = System.nanoTime()),
            stopIds = setOfNotNull(eos),
        )
        var ids = engine.tokenizer.encode(prompt)
        if (ids.isEmpty()) ids = intArrayOf(eos ?: 0)
        val room = engine.contract.maxSeqLen - 1
        if (ids.size > room) ids = ids.copyOfRange(ids.size - room, ids.size) // keep the end of a long prompt
        val text = TextStream(engine.tokenizer, skipIds = setOfNotNull(eos))
        _state.update { it.copy(running = true, output = prompt, tokensPerSecond = null) }
        job = viewModelScope.launch {
            try {
                engine.generate(ids, config).flowOn(inference).collect { event ->
                    when (event) {
                        is GenerationEvent.Token -> _state.update { it.copy(output = it.output + text.push(event.id)) }
                        is GenerationEvent.Done -> _state.update {
                            it.copy(output = it.output + text.flush(), tokensPerSecond = event.result.tokensPerSecond,
                                status = when (event.result.stopReason) {
                                    StopReason.STOP_TOKEN -> "Stopped at <|endoftext|>"
                                    StopReason.MAX_NEW_TOKENS -> "Reached ${s.maxNewTokens} tokens"
                                    StopReason.CONTEXT_FULL -> "The ${engine.contract.maxSeqLen}-token window is full"
                                    StopReason.CANCELLED -> "Stopped"
                                })
                        }
                    }
                }
            } finally {
                _state.update { it.copy(running = false) }
            }
        }
    }

    fun stop() {
        job?.cancel()
        _state.update { it.copy(status = "Stopped") }
    }

    override fun onCleared() {
        job?.cancel()
        val loaded = engine ?: return
        // close on the inference thread, after any running step has finished
        kotlinx.coroutines.runBlocking(inference) { loaded.close() }
    }
}
