package dev.tfgpt2.core

import org.junit.Test

class JsonTest {
    @Test fun parsesNestedValues() {
        val v = Json.parse("""{"a": [1, -2.5e3, "x\"y", true, null], "b": {}}""") as Map<*, *>
        Check.equal(listOf(1L, -2500.0, "x\"y", true, null), v["a"])
        Check.equal(emptyMap<String, Any?>(), v["b"])
    }

    @Test fun keepsLoneSurrogatesAndPairs() {
        Check.equal("a\uD83D\uDE00b\uDFAF", Json.parse("\"a\\ud83d\\ude00b\\udfaf\""))
    }

    @Test fun errorsSayWhere() {
        Check.throws(Json.ParseException::class.java, "line 2") { Json.parse("{\"a\": 1,\n }") }
        Check.throws(Json.ParseException::class.java, "trailing") { Json.parse("[1] 2") }
        Check.throws(Json.ParseException::class.java, "unterminated") { Json.parse("\"abc") }
    }
}
