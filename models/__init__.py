"""Encoder and two-tower code, training, evaluation and the item index."""
