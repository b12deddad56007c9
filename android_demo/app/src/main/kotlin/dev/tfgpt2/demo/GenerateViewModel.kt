package dev.tfgpt2.demo

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.tfgpt2.core.ModelContract
import dev.tfgpt2.core.ModelInstaller
import dev.tfgpt2.core.Sampling
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ExperimentalCoroutinesApi
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File

data class UiState(
    val status: String = "Loading model…",
    val ready: Boolean = false,
    val running: Boolean = false,
    val output: String = "",
    val tokensPerSecond: Double? = null,
    val sampling: Sampling = Sampling(),
    val gpu: Boolean = false,
)

/**
 * Copies the `.litertlm` from the assets to a file on first run, opens it on LiteRT-LM's Engine off the
 * main thread (CPU or GPU), streams generated text into [state], stops on request.
 */
class GenerateViewModel(app: Application) : AndroidViewModel(app) {
    @OptIn(ExperimentalCoroutinesApi::class)
    private val inference = Dispatchers.Default.limitedParallelism(1) // one thread owns the engine
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()
    private var model: LiteRtLmModel? = null
    private var job: Job? = null

    init {
        load(gpu = false)
    }

    /** (Re)opens the model on the CPU or the GPU. */
    fun load(gpu: Boolean) {
        job?.cancel()
        _state.update { it.copy(ready = false, gpu = gpu, status = "Loading model…") }
        viewModelScope.launch {
            try {
                val opened = withContext(inference) {
                    model?.close()
                    model = null
                    val app = getApplication<Application>()
                    val contract = ModelContract.parse(app.assets.open("model.json").bufferedReader().readText())
                    val file = contract.pick()
                    val path = ModelInstaller.install({ app.assets.open(file.file) }, File(app.filesDir, file.file), file.sha256)
                    val threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
                    LiteRtLmModel.open(file, path.absolutePath, app.cacheDir.absolutePath, gpu, threads)
                }
                model = opened
                _state.update { it.copy(ready = true, status = "${opened.file.file} (${opened.file.recipe}) on " +
                    "${opened.backend}, ${opened.file.maxNumTokens}-token window") }
            } catch (e: Exception) {
                _state.update { it.copy(status = "Could not load the model: ${e.message}. Export one with " +
                    "`tfgpt2 export --model … --android android_demo/app/src/main/assets` and rebuild.") }
            }
        }
    }

    fun updateSampling(sampling: Sampling) = _state.update { it.copy(sampling = sampling) }

    fun generate(prompt: String) {
        val loaded = model ?: return
        job?.cancel()
        val sampling = _state.value.sampling.copy(seed = (System.nanoTime() and 0x7fffffff).toInt())
        _state.update { it.copy(running = true, output = prompt, tokensPerSecond = null, status = "Generating…") }
        job = viewModelScope.launch {
            try {
                val outcome = withContext(inference) {
                    loaded.generate(prompt, sampling) { text -> _state.update { it.copy(output = it.output + text) } }
                }
                _state.update {
                    it.copy(tokensPerSecond = outcome.tokensPerSecond, status = when (outcome.stop) {
                        Stop.MAX_NEW_TOKENS -> "Reached ${sampling.maxNewTokens} tokens"
                        Stop.CANCELLED -> "Stopped"
                        Stop.END -> "Stopped at <|endoftext|> or a full ${loaded.file.maxNumTokens}-token window"
                    })
                }
            } catch (e: Exception) {
                _state.update { it.copy(status = "Generation failed: ${e.message}") }
            } finally {
                _state.update { it.copy(running = false) }
            }
        }
    }

    fun stop() {
        model?.cancel()
    }

    override fun onCleared() {
        model?.cancel()
        val loaded = model ?: return
        // close on the inference thread, after the running generation has returned
        kotlinx.coroutines.runBlocking(inference) { loaded.close() }
    }
}
