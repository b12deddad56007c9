package dev.tfgpt2.demo

import com.google.ai.edge.litertlm.Backend
import com.google.ai.edge.litertlm.Engine
import com.google.ai.edge.litertlm.EngineConfig
import com.google.ai.edge.litertlm.InputData
import com.google.ai.edge.litertlm.LogSeverity
import com.google.ai.edge.litertlm.ResponseCallback
import com.google.ai.edge.litertlm.SamplerConfig
import com.google.ai.edge.litertlm.Session
import com.google.ai.edge.litertlm.SessionConfig
import dev.tfgpt2.core.LitertlmFile
import dev.tfgpt2.core.Sampling
import java.util.concurrent.CancellationException
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicInteger

/** Where a generation ended. */
enum class Stop { MAX_NEW_TOKENS, CANCELLED, END }

data class Outcome(val stop: Stop, val tokens: Int, val tokensPerSecond: Double)

/**
 * The exported `.litertlm` on LiteRT-LM's Kotlin Engine: text in, streamed text out. LiteRT-LM
 * tokenizes, samples and keeps the KV cache in its own buffers (the model writes it in place); this
 * class only picks the backend, starts a session per request and stops it. No Android types, so CI
 * type-checks it against the LiteRT-LM API without the Android SDK.
 */
class LiteRtLmModel private constructor(val file: LitertlmFile, val backend: String, private val engine: Engine) :
    AutoCloseable {
    @Volatile private var session: Session? = null

    /**
     * Streams the continuation of [prompt] to [onText] (one call per token) until [Sampling.maxNewTokens],
     * the model's stop token, a full cache, or [cancel]. Blocks the calling thread.
     */
    fun generate(prompt: String, sampling: Sampling, onText: (String) -> Unit): Outcome {
        val args = sampling.samplerArgs()
        val s = engine.createSession(SessionConfig(SamplerConfig(args.topK, args.topP, args.temperature, args.seed)))
        session = s
        val finished = CountDownLatch(1)
        val tokens = AtomicInteger()
        var stop = Stop.END
        var failure: Throwable? = null
        val start = System.nanoTime()
        try {
            s.generateContentStream(listOf(InputData.Text(prompt)), object : ResponseCallback {
                override fun onNext(response: String) {
                    onText(response)
                    if (tokens.incrementAndGet() >= sampling.maxNewTokens) {
                        stop = Stop.MAX_NEW_TOKENS
                        s.cancelProcess()
                    }
                }

                override fun onDone() = finished.countDown()

                override fun onError(throwable: Throwable) {
                    if (throwable is CancellationException) {
                        if (stop != Stop.MAX_NEW_TOKENS) stop = Stop.CANCELLED
                    } else {
                        failure = throwable
                    }
                    finished.countDown()
                }
            })
            finished.await()
        } finally {
            session = null
            s.close()
        }
        failure?.let { throw it }
        val seconds = (System.nanoTime() - start) / 1e9
        return Outcome(stop, tokens.get(), if (seconds > 0) tokens.get() / seconds else 0.0)
    }

    /** Stops the running [generate] (a no-op when none runs). */
    fun cancel() {
        session?.cancelProcess()
    }

    override fun close() = engine.close()

    companion object {
        /**
         * Opens [path] (the `.litertlm` on disk) on the CPU with [threads] threads or on the GPU; the GPU
         * falls back to the CPU when the device has no usable GPU delegate.
         */
        fun open(file: LitertlmFile, path: String, cacheDir: String, gpu: Boolean, threads: Int): LiteRtLmModel {
            Engine.setNativeMinLogSeverity(LogSeverity.ERROR)
            fun start(backend: Backend): Engine =
                Engine(EngineConfig(modelPath = path, backend = backend, maxNumTokens = file.maxNumTokens,
                    cacheDir = cacheDir)).also { it.initialize() }
            if (gpu) {
                try {
                    return LiteRtLmModel(file, "GPU", start(Backend.GPU()))
                } catch (e: Exception) {
                    // no GPU delegate on this device: the CPU runs the same file
                }
            }
            return LiteRtLmModel(file, "CPU", start(Backend.CPU(threadCount = threads)))
        }
    }
}
