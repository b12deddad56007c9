"""tfgpt2.export: SavedModel (TF Serving) and TFLite (LiteRT) export, installed from export/ by setup.py.

build: saved_model, text_serving, tflite (+ tied, int4); verify: verify (+ cache_host); the
whole pipeline with model.json and the report: pipeline.
"""
