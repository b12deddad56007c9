"""The export recipes, in one table: what each one means, from graph to bytes on disk.

A recipe names what it does in every format that has it (`formats`): TFLite (LiteRT) files and ONNX
directories (onnx_export.py: fp32, and int8 = ORT dynamic quantization with the tied table stored
once). Every .tflite is converted from a SavedModel of `LiteGPT2` (tflite.py) that a child process writes
(worker.py); `archive` says which one. int8-full is the exception: its calibration runs the float
model during conversion, so its child converts from the model itself.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    archive: str = "float"  # the SavedModel converted: "float", "int4" (int8 embedding table), None (the model)
    optimize: str = None  # converter mode: None, "fp16" (weights), "dynamic" (int8 weights), "calibrated"
    tied: bool = False  # point the LM head at the embedding's int8 table (tied.share_tied_embedding)
    int4: bool = False  # quantize the converted float weights to int4 (ai-edge-quantizer, int4.quantize)
    integer_attention: bool = False  # decode attention with ops that have int8 kernels
    buffer_offset: bool = True  # weights after the flatbuffer (one less copy; tied.py re-serialises instead)
    formats: tuple = ("tflite",)  # the export formats that have this recipe

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
    Recipe("fp32", "float32 weights", formats=("tflite", "onnx")),
    Recipe("fp16", "float16 weights, float32 compute", optimize="fp16"),
    Recipe("int8", "dynamic range: int8 weights, float activations; the tied embedding stored once",
           optimize="dynamic", tied=True, buffer_offset=False, formats=("tflite", "onnx")),
    Recipe("int8-full", "int8 weights and activations, calibrated on text (loses GPT-2's accuracy)",
           archive=None, optimize="calibrated", tied=True, integer_attention=True, buffer_offset=False),
    Recipe("int4", "channelwise int4 weights (ai-edge-quantizer, OCTAV clipping), int8 embedding table",
           archive="int4", int4=True),
)}


def get(name):
    if name not in RECIPES:
        raise ValueError(f"unknown quantization recipe {name!r}; choose from {', '.join(RECIPES)}.")
    return RECIPES[name]


QUANTIZED_FORMATS = ("tflite", "onnx")  # the formats `quantize` chooses recipes for


def plan(formats, quantize):
    """{format: [recipe, ...]} for the quantized formats among `formats`.

    Each `quantize` entry is a recipe for every such format (it must exist in each), or `format:recipe`
    for one of them; a format no entry names gets none. ValueError naming the fix otherwise.
    """
    chosen = [f for f in QUANTIZED_FORMATS if f in formats]
    out = {f: [] for f in chosen}
    for entry in quantize:
        fmt, _, name = entry.rpartition(":")
        recipe = get(name)
        for target in [fmt] if fmt else chosen:
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


def archive_kinds(names):
    """The SavedModels the recipes `names` convert from, in a stable order."""
    kinds = {get(n).archive for n in names} - {None}
    return [k for k in ("float", "int4") if k in kinds]
