"""ONNX export of the BERT towers, graph optimisation and parity checks (needs the `export` extra)."""
