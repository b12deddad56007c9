"""report.md / report.json of an export: per model size, fidelity vs Keras, LiteRT / ORT tok/s, conversion cost."""

import json
import os


def write(out_dir, report):
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    lines = ["# tfgpt2 export report", "", "| model | runtime | MB | max abs logit diff | top-1 agreement | "
             "perplexity (Keras) | decode tok/s (2 threads) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in report["files"].items():
        runtime = {"onnx": "ONNX Runtime", "litertlm": "LiteRT-LM", "saved_model": "TensorFlow"}.get(
            r.get("format"), "LiteRT")
        fid = r.get("fidelity")
        cells = (f"{fid['max_abs_logit_diff']:.2e} | {100 * fid['top1_agreement']:.2f} % | {fid['perplexity']:.2f} "
                 f"({fid['keras_perplexity']:.2f})") if fid else "– | – | –"
        speed = f"{r['decode_tok_s']:.1f}" if "decode_tok_s" in r else "–"
        lines.append(f"| {name} | {runtime} | {r['bytes'] / 1e6:.2f} | {cells} | {speed} |")
    if not any("fidelity" in r for r in report["files"].values()):
        lines += ["", "Fidelity not measured: `tfgpt2 export --held-out-text FILES` measures it on that text."]
    lines += ["", f"export: {report['conversion_seconds']:.1f} s; peak RSS {report['peak_rss_gb']:.2f} GB "
              f"(process tree: a conversion child + the exporting process; the exporting process alone "
              f"{report['exporting_process_peak_rss_gb']:.2f} GB)", "", "| file | conversion s | child peak RSS GB |",
              "|---|---:|---:|"]
    lines += [f"| {name} | {r['seconds']:.1f} | {r['peak_rss_gb']:.2f} |" for name, r in report["files"].items()]
    lines += [f"\n{name}: {r['runtime_check']}" for name, r in report["files"].items() if "runtime_check" in r]
    for name, value in report.get("special_tokens_outside_vocab", {}).items():
        lines += ["", f"{name} {value} is outside the vocabulary: never fed to the model, not a stop token."]
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
