"""Encoder and two-tower code, training, evaluation and the item index.

Runtime modules (no torch on their import path): `encoder` (TextEncoder protocol, ONNX encoder),
`manifest` (model folder contract), `catalog` (catalogue readers, item text template), `item_index`
(embeddings on disk, incremental upsert/remove) and `topk` (exact cosine top-K).
"""
