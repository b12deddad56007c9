package dev.tfgpt2.core

import java.io.File
import java.io.InputStream
import java.security.MessageDigest

/**
 * Puts the `.litertlm` where LiteRT-LM can open it: a file (an APK asset is not one). The copy is
 * written under a temporary name, checked against model.json's sha256 and renamed, so a killed app
 * never leaves half a model; a copy that is already there with the right hash is kept.
 */
object ModelInstaller {
    /** `target`, copied from `open()` unless it already holds the file `sha256` names (null: unchecked). */
    fun install(open: () -> InputStream, target: File, sha256: String?): File {
        if (target.isFile && (sha256 == null || sha256(target) == sha256)) return target
        target.parentFile?.mkdirs()
        val partial = File(target.path + ".partial")
        open().use { input -> partial.outputStream().use { input.copyTo(it, 1 shl 20) } }
        val actual = sha256(partial)
        if (sha256 != null && actual != sha256) {
            partial.delete()
            throw ModelContractException("${target.name} in the app's assets has sha256 $actual, not model.json's " +
                "$sha256; re-export with `tfgpt2 export --android …` and rebuild")
        }
        if (!partial.renameTo(target)) {
            partial.delete()
            throw IllegalStateException("could not move the model into place at $target")
        }
        return target
    }

    fun sha256(file: File): String {
        val digest = MessageDigest.getInstance("SHA-256")
        file.inputStream().use { input ->
            val buffer = ByteArray(1 shl 20)
            while (true) {
                val n = input.read(buffer)
                if (n < 0) break
                digest.update(buffer, 0, n)
            }
        }
        return digest.digest().joinToString("") { "%02x".format(it) }
    }
}
