"""tfgpt2.export: the SavedModel / TFLite export pipeline (installed from export/ by setup.py).

The pipeline itself (build / convert / verify) is tracked as issue #5; this package exists so
`tfgpt2.export` is the import path from the first release on and never a global `export`.
"""
