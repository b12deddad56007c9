#!/usr/bin/env bash
# Compiles gpt2-core and its tests with kotlinc and runs them with JUnit 4 on the JVM (no Gradle needed),
# and type-checks the app's LiteRT-LM code (app/.../LiteRtLmModel.kt) against compile-only stubs of
# LiteRT-LM's Kotlin API (litertlm-stubs/): the Android SDK and the real library can't be fetched here.
#   kotlinc: $KOTLINC, else npm's kotlin-compiler under $KOTLIN_HOME_NPM, else kotlinc on PATH
#            (.ci/run installs it: npm install --prefix ~/.cache/tfgpt2/kotlin kotlin-compiler@2.4.20)
#   JUnit 4: Debian's junit4 package (/usr/share/java/junit4.jar + hamcrest-core.jar)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
npm_home="${KOTLIN_HOME_NPM:-$HOME/.cache/tfgpt2/kotlin}"
npm_kotlinc="$npm_home/node_modules/kotlin-compiler/bin/kotlinc-jvm"
if [ -n "${KOTLINC:-}" ]; then kotlinc="$KOTLINC"
elif [ -x "$npm_kotlinc" ]; then kotlinc="$npm_kotlinc"
else kotlinc="$(command -v kotlinc-jvm || command -v kotlinc || echo "$npm_kotlinc")"; fi
[ -x "$kotlinc" ] || { echo "kotlinc not found: npm install --prefix $npm_home kotlin-compiler@2.4.20" >&2; exit 1; }
junit=/usr/share/java/junit4.jar
hamcrest=/usr/share/java/hamcrest-core.jar
[ -f "$junit" ] || { echo "JUnit 4 not found: apt-get install -y junit4" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$kotlinc" -jvm-target 17 -nowarn -d "$out/core.jar" $(find "$here/src/main/kotlin" -name '*.kt')
"$kotlinc" -jvm-target 17 -nowarn -cp "$out/core.jar:$junit" -Xfriend-paths="$out/core.jar" -d "$out/tests.jar" $(find "$here/src/test/kotlin" -name '*.kt')
"$kotlinc" -jvm-target 17 -nowarn -d "$out/litertlm-stubs.jar" $(find "$here/../litertlm-stubs/src" -name '*.kt')
"$kotlinc" -jvm-target 17 -nowarn -cp "$out/core.jar:$out/litertlm-stubs.jar" -d "$out/app-litertlm.jar" \
  "$here/../app/src/main/kotlin/dev/tfgpt2/demo/LiteRtLmModel.kt"
echo "app LiteRT-LM code type-checks against the LiteRT-LM API stubs"
stdlib="$(dirname "$(readlink -f "$kotlinc")")/../lib/kotlin-stdlib.jar"
java -Dtfgpt2.root="$root" -cp "$out/core.jar:$out/tests.jar:$junit:$hamcrest:$stdlib" dev.tfgpt2.core.TestMain
