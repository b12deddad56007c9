"""The export recipes, in one table: what each one means, from graph to bytes on disk.

A recipe names what it does in every format that has it (`formats`): TF Serving SavedModels
(`saved_model`: fp32 always, int8 / int4 = the model after `model.quantize(recipe)`, only when named as
`saved_model:<recipe>`), TFLite (LiteRT) files, ONNX directories (onnx_export.py: fp32, and int8
weights with the tied table stored once) and .litertlm files (the .tflite of the same recipe in
LiteRT-LM's signature layout, litertlm.py). Every .tflite is converted from a SavedModel that a child
process writes (worker.py): `archive` says which one (with "lm-" before it for LiteRT-LM's layout).
The bound recipes (fp32, int8, int4) convert a graph whose weights are inputs and write the weights
into the file themselves, tensor by tensor from the checkpoint (bound.py): their memory does not grow
with the model. int8-full is the exception the other way: its calibration runs the float model during
conversion, so its child converts from the model itself.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    archive: str = "float"  # the SavedModel converted: "float", "bound-float" / "bound-int8" (bound.py), None
    optimize: str = None  # None, "fp16" (weights), "dynamic" (int8 weights), "calibrated"; the converter's mode
    # for unbound recipes (a bound one converts without it and writes its own types), ONNX's for all
    tied: bool = False  # point the LM head at the embedding's int8 table (tied.share_tied_embedding)
    integer_attention: bool = False  # decode attention with ops that have int8 kernels
    formats: tuple = ("tflite",)  # the export formats that have this recipe

    @property
    def bound(self):
        """Whether bound.py writes the weights (the converter sees a weightless graph)."""
        return bool(self.archive) and self.archive.startswith("bound-")

    def converter_options(self, representative_dataset=None):
        """TFLiteConverter settings: optimizations, target_types, representative_dataset."""
        import tensorflow as tf

        if self.optimize is None:
            return {}
        options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
        if self.optimize == "fp16":
            options["target_types"] = [tf.float16]
        if self.optimize == "calibrated":
            options["representative_dataset"] = representative_dataset
        return options


RECIPES = {r.name: r for r in (
    Recipe("fp32", "float32 weights", archive="bound-float", formats=("saved_model", "tflite", "onnx", "litertlm")),
    Recipe("fp16", "float16 weights, float32 compute", optimize="fp16"),
    Recipe("int8", "dynamic range: int8 weights (one scale per output channel), float activations; the tied "
           "embedding stored once as an int8 table", archive="bound-int8", optimize="dynamic",
           formats=("saved_model", "tflite", "onnx", "litertlm")),
    Recipe("int8-full", "int8 weights and activations, calibrated on text (loses GPT-2's accuracy)",
           archive=None, optimize="calibrated", tied=True, integer_attention=True),
    Recipe("int4", "channelwise int4 block weights (ai-edge-quantizer's min-max rule), the tied embedding as an "
           "int8 table", archive="bound-int8", formats=("saved_model", "tflite", "litertlm")),
)}


def get(name):
    if name not in RECIPES:
        raise ValueError(f"unknown quantization recipe {name!r}; choose from {', '.join(RECIPES)}.")
    return RECIPES[name]


QUANTIZED_FORMATS = ("saved_model", "tflite", "onnx", "litertlm")  # the formats `quantize` chooses recipes for
DEFAULTS = {"saved_model": ["fp32"], "tflite": ["fp32", "int8"], "onnx": ["fp32", "int8"],
            "litertlm": ["int8"]}  # without `quantize`


def saved_model_dir(recipe):
    """Where a SavedModel recipe goes (a TF Serving base path): saved_model, saved_model_int8, ..."""
    return "saved_model" if recipe == "fp32" else f"saved_model_{recipe}"


def plan(formats, quantize=None):
    """{format: [recipe, ...]} for the quantized formats among `formats`.

    Each `quantize` entry is a recipe for every such format but saved_model (it must exist in each), or
    `format:recipe` for one of them; a format no entry names gets none, except saved_model, which always
    has fp32 (quantized SavedModels only when named: saved_model:int8). ValueError naming the fix
    otherwise. Without `quantize`, each format gets its DEFAULTS.
    """
    chosen = [f for f in QUANTIZED_FORMATS if f in formats]
    if quantize is None:
        return {f: list(DEFAULTS[f]) for f in chosen}
    out = {f: (["fp32"] if f == "saved_model" else []) for f in chosen}
    for entry in quantize:
        fmt, _, name = entry.rpartition(":")
        recipe = get(name)
        targets = [fmt] if fmt else [f for f in chosen if f != "saved_model"]
        if not targets:
            raise ValueError(f"--quantize {entry}: the SavedModel takes a recipe only as saved_model:{name}; "
                             "name the format, or add tflite / onnx / litertlm to --formats.")
        for target in targets:
            if target not in out:
                raise ValueError(f"--quantize {entry}: {target!r} is not among the export formats "
                                 f"({', '.join(formats)}); add it to --formats or drop the entry.")
            if target not in recipe.formats:
                have = ", ".join(r.name for r in RECIPES.values() if target in r.formats)
                raise ValueError(f"recipe {name!r} is not available for {target} (its recipes: {have}); name the "
                                 f"format of each recipe, e.g. --quantize tflite:{name},{target}:int8.")
            if name not in out[target]:
                out[target].append(name)
    return out


ARCHIVES = ("float", "bound-float", "bound-int8", "lm-bound-float", "lm-bound-int8")  # lm-: LiteRT-LM's layout


def archive_kinds(names, layout="tflite"):
    """The SavedModels the recipes `names` of format `layout` convert from, in a stable order."""
    prefix = "lm-" if layout == "litertlm" else ""
    kinds = {prefix + get(n).archive for n in names if get(n).archive is not None}
    return [k for k in ARCHIVES if k in kinds]
