package dev.tfgpt2.core

import org.junit.Assert
import org.junit.runner.JUnitCore
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener
import java.io.File
import java.util.concurrent.atomic.AtomicLong
import kotlin.system.exitProcess

/** Assertions that count themselves, so the run can print how many checks passed. */
object Check {
    val count = AtomicLong()

    fun <T> equal(expected: T, actual: T, message: String = "") { count.incrementAndGet(); Assert.assertEquals(message, expected, actual) }
    fun arrays(expected: IntArray, actual: IntArray, message: String = "") { count.incrementAndGet(); Assert.assertArrayEquals(message, expected, actual) }
    fun bytes(expected: ByteArray, actual: ByteArray, message: String = "") { count.incrementAndGet(); Assert.assertArrayEquals(message, expected, actual) }
    fun isTrue(condition: Boolean, message: String = "") { count.incrementAndGet(); Assert.assertTrue(message, condition) }
    fun <T : Throwable> throws(type: Class<T>, messagePart: String, block: () -> Unit): T {
        count.incrementAndGet()
        val e = Assert.assertThrows(type) { block() }
        Assert.assertTrue("message \"${e.message}\" lacks \"$messagePart\"", e.message.orEmpty().contains(messagePart))
        return e
    }
}

/** Files shared with the Python tests: the repository root comes from -Dtfgpt2.root. */
object Golden {
    val root: File = File(System.getProperty("tfgpt2.root") ?: "../..").canonicalFile

    fun file(rel: String): File = File(root, rel).also {
        require(it.isFile) { "$it is missing: python tools/write_goldens.py writes tests/golden/" }
    }

    fun json(rel: String): Map<*, *> = Json.parse(file(rel).readText(Charsets.UTF_8)) as Map<*, *>
}

/** Runs every test class, prints tests and assertions, exits non-zero on any failure. */
object TestMain {
    @JvmStatic
    fun main(args: Array<String>) {
        val classes = arrayOf(JsonTest::class.java, ModelContractTest::class.java, ModelInstallerTest::class.java,
            SamplingTest::class.java)
        val core = JUnitCore()
        core.addListener(object : RunListener() {
            override fun testFailure(failure: Failure) {
                System.err.println("FAIL ${failure.testHeader}: ${failure.message}")
            }
        })
        val result = core.run(*classes)
        println("gpt2-core Kotlin tests: ${result.runCount} run, ${result.failureCount} failed, " +
            "${result.ignoreCount} ignored, ${Check.count.get()} assertions, ${result.runTime} ms")
        exitProcess(if (result.wasSuccessful() && result.runCount > 0) 0 else 1)
    }
}
