package dev.tfgpt2.core

import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.File
import java.nio.file.Files

class ModelInstallerTest {
    private val bytes = ByteArray(3_000_000) { (it * 31 % 251).toByte() }
    private val dir: File = Files.createTempDirectory("installer").toFile().also { it.deleteOnExit() }

    private fun hash(data: ByteArray): String {
        val f = File(dir, "h").apply { writeBytes(data) }
        return ModelInstaller.sha256(f).also { f.delete() }
    }

    @Test fun copiesOnceThenKeepsTheCopy() {
        val target = File(dir, "m.litertlm")
        var opened = 0
        val open = { opened++; ByteArrayInputStream(bytes) }
        val digest = hash(bytes)
        Check.equal(64, digest.length)
        ModelInstaller.install(open, target, digest)
        Check.bytes(bytes, target.readBytes())
        ModelInstaller.install(open, target, digest)
        Check.equal(1, opened, "a copy with the right sha256 is kept")
        target.writeBytes(bytes.copyOf(10)) // a truncated copy (e.g. from an older app version) is replaced
        ModelInstaller.install(open, target, digest)
        Check.equal(2, opened)
        Check.bytes(bytes, target.readBytes())
        Check.isTrue(!File(dir, "m.litertlm.partial").exists())
    }

    @Test fun aWrongHashLeavesNothing() {
        val target = File(dir, "bad.litertlm")
        Check.throws(ModelContractException::class.java, "not model.json's") {
            ModelInstaller.install({ ByteArrayInputStream(bytes) }, target, "0".repeat(64))
        }
        Check.isTrue(!target.exists() && !File(dir, "bad.litertlm.partial").exists())
    }
}
