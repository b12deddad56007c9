// Pure Kotlin/JVM: no Android imports, stdlib only. Also tested without Gradle by run-tests.sh (CI).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(libs.junit)
}

tasks.test {
    // golden vectors and vocab files live in the Python repository around this project
    systemProperty("tfgpt2.root", rootDir.parentFile.absolutePath)
}
