"""tfgpt2.export: SavedModel (TF Serving) and TFLite (LiteRT) export.

build: saved_model, text_serving, tflite (+ tied, int4); the recipes: recipes; convert in
children: worker; check: verify (+ cache_host); the whole pipeline: pipeline, with model.json
(contract) and the report (report); the source model: source.
"""
