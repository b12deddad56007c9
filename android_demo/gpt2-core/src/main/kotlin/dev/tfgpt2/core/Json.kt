package dev.tfgpt2.core

/**
 * A small strict JSON reader (RFC 8259) for model.json, vocab.json and the golden test files.
 *
 * gpt2-core depends on the Kotlin stdlib only (docs/design.md, Android), so it carries its own reader.
 * Objects become `Map<String, Any?>` (insertion order kept), arrays `List<Any?>`, numbers `Long`
 * when integral and `Double` otherwise. `\uXXXX` escapes are kept as UTF-16 units, so a lone
 * surrogate written by Python's `json.dump` survives.
 *
 * ```
 * val obj = Json.parse("""{"a": [1, 2.5, "x"]}""") as Map<*, *>
 * ```
 */
object Json {
    class ParseException(message: String) : IllegalArgumentException(message)

    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.skipSpace()
        val value = reader.value()
        reader.skipSpace()
        if (reader.pos != text.length) throw reader.error("unexpected trailing text")
        return value
    }

    private class Reader(val s: String) {
        var pos = 0

        fun error(what: String): ParseException {
            val line = s.substring(0, minOf(pos, s.length)).count { it == '\n' } + 1
            return ParseException("invalid JSON at line $line (offset $pos): $what")
        }

        fun skipSpace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(): Any? {
            if (pos >= s.length) throw error("unexpected end of input")
            return when (s[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        fun literal(word: String, result: Any?): Any? {
            if (!s.startsWith(word, pos)) throw error("unexpected character '${s[pos]}'")
            pos += word.length
            return result
        }

        fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == '}') { pos++; return out }
            while (true) {
                skipSpace()
                if (pos >= s.length || s[pos] != '"') throw error("expected a \"key\"")
                val key = string()
                skipSpace()
                expect(':')
                skipSpace()
                out[key] = value()
                skipSpace()
                if (pos < s.length && s[pos] == ',') { pos++; continue }
                expect('}')
                return out
            }
        }

        fun array(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == ']') { pos++; return out }
            while (true) {
                skipSpace()
                out.add(value())
                skipSpace()
                if (pos < s.length && s[pos] == ',') { pos++; continue }
                expect(']')
                return out
            }
        }

        fun expect(c: Char) {
            if (pos >= s.length || s[pos] != c) throw error("expected '$c'")
            pos++
        }

        fun string(): String {
            pos++ // opening quote
            val sb = StringBuilder()
            while (true) {
                if (pos >= s.length) throw error("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= s.length) throw error("unterminated escape")
                        when (val e = s[pos++]) {
                            '"', '\\', '/' -> sb.append(e)
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) throw error("short \\u escape")
                                val code = s.substring(pos, pos + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                sb.append(code.toChar())
                                pos += 4
                            }
                            else -> throw error("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> throw error("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        fun number(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            while (pos < s.length && (s[pos].isDigit() || s[pos] in ".eE+-")) pos++
            val text = s.substring(start, pos)
            if (text.isEmpty() || text == "-") throw error("unexpected character '${s[start]}'")
            val integral = text.none { it in ".eE" }
            return (if (integral) text.toLongOrNull() else null) ?: text.toDoubleOrNull() ?: throw error("bad number '$text'")
        }
    }
}
