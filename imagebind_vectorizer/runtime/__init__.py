"""The runtime: the loaded model and the steps that run it (preprocess -> forward -> finish), in
process, and what it reports about itself (`info.ModelInfo`). The engine builds on it to batch
across requests; the Python API (`Embedder`) is it, used directly."""
