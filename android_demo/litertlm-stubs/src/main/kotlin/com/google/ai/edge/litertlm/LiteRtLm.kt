// Compile-only declarations of the part of LiteRT-LM's Kotlin API (com.google.ai.edge.litertlm,
// litertlm-android) the app calls, with the signatures of the pinned version. CI type-checks the
// app's LiteRT-LM code against them (gpt2-core/run-tests.sh); the app itself links the real library.
package com.google.ai.edge.litertlm

private fun stub(): Nothing = throw UnsupportedOperationException("compile-only stub of LiteRT-LM")

sealed class Backend(val name: String) {
    data class CPU(val threadCount: Int? = null) : Backend("CPU")
    class GPU : Backend("GPU")
}

data class EngineConfig(
    val modelPath: String,
    val backend: Backend = Backend.CPU(),
    val visionBackend: Backend? = null,
    val audioBackend: Backend? = null,
    val maxNumTokens: Int? = null,
    val maxNumImages: Int? = null,
    val cacheDir: String? = null,
)

data class SamplerConfig(val topK: Int, val topP: Double, val temperature: Double, val seed: Int = 0)

data class SessionConfig(val samplerConfig: SamplerConfig? = null)

enum class LogSeverity(val severity: Int) { VERBOSE(0), DEBUG(1), INFO(2), WARNING(3), ERROR(4), FATAL(5) }

class Engine(val engineConfig: EngineConfig) : AutoCloseable {
    fun initialize(): Unit = stub()
    fun isInitialized(): Boolean = stub()
    fun createSession(sessionConfig: SessionConfig = SessionConfig()): Session = stub()
    override fun close(): Unit = stub()

    companion object {
        fun setNativeMinLogSeverity(level: LogSeverity): Unit = stub()
    }
}

sealed class InputData {
    data class Text(val text: String) : InputData()
}

interface ResponseCallback {
    fun onNext(response: String) {}
    fun onDone() {}
    fun onError(throwable: Throwable) {}
}

class Session : AutoCloseable {
    val isAlive: Boolean get() = stub()
    fun runPrefill(inputData: List<InputData>): Unit = stub()
    fun runDecode(): String = stub()
    fun generateContentStream(inputData: List<InputData>, responseCallback: ResponseCallback): Unit = stub()
    fun cancelProcess(): Unit = stub()
    override fun close(): Unit = stub()
}
