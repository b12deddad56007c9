package dev.tfgpt2.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Slider
import androidx.compose.material3.Switch
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import androidx.lifecycle.viewmodel.compose.viewModel
import dev.tfgpt2.core.Sampling
import kotlin.math.roundToInt

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        setContent { MaterialTheme { GenerateScreen() } }
    }
}

@Composable
fun GenerateScreen(vm: GenerateViewModel = viewModel()) {
    val state by vm.state.collectAsStateWithLifecycle()
    var prompt by remember { mutableStateOf("The meaning of life is") }
    Scaffold { padding ->
        Column(
            Modifier.padding(padding).padding(16.dp).fillMaxSize(),
            verticalArrangement = Arrangement.spacedBy(8.dp),
        ) {
            Text(state.status, style = MaterialTheme.typography.labelMedium)
            OutlinedTextField(prompt, { prompt = it }, Modifier.fillMaxWidth(), label = { Text("Prompt") }, minLines = 2)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Button({ vm.generate(prompt) }, enabled = state.ready && !state.running) { Text("Generate") }
                OutlinedButton({ vm.stop() }, enabled = state.running) { Text("Stop") }
                state.tokensPerSecond?.takeIf { !it.isNaN() }?.let { Text("%.1f tok/s".format(it)) }
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Text("GPU", style = MaterialTheme.typography.bodySmall)
                Switch(state.gpu, { vm.load(gpu = it) }, enabled = !state.running)
            }
            SettingsPanel(state.sampling, enabled = !state.running, onChange = vm::updateSampling)
            Text(state.output, Modifier.weight(1f).fillMaxWidth().verticalScroll(rememberScrollState()))
        }
    }
}

@Composable
private fun SettingsPanel(s: Sampling, enabled: Boolean, onChange: (Sampling) -> Unit) {
    LabeledSlider("Max tokens ${s.maxNewTokens}", s.maxNewTokens.toFloat(), 8f..256f, enabled) {
        onChange(s.copy(maxNewTokens = it.roundToInt()))
    }
    LabeledSlider("Temperature %.2f%s".format(s.temperature, if (s.greedy) " (greedy)" else ""),
        s.temperature.toFloat(), 0f..1.5f, enabled) { onChange(s.copy(temperature = (it * 20).roundToInt() / 20.0)) }
    LabeledSlider("Top-k ${s.topK}", s.topK.toFloat(), 1f..100f, enabled) {
        onChange(s.copy(topK = it.roundToInt().coerceAtLeast(1)))
    }
    LabeledSlider("Top-p %.2f".format(s.topP), s.topP.toFloat(), 0.05f..1f, enabled) {
        onChange(s.copy(topP = (it * 20).roundToInt() / 20.0))
    }
}

@Composable
private fun LabeledSlider(label: String, value: Float, range: ClosedFloatingPointRange<Float>, enabled: Boolean,
                          onChange: (Float) -> Unit) {
    Column {
        Text(label, style = MaterialTheme.typography.bodySmall)
        Slider(value, onChange, valueRange = range, enabled = enabled)
    }
}
