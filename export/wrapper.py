"""The PyTorch module that is exported: BERT, mean pooling over the mask, L2 normalisation.

This is what sentence-transformers computes for all-MiniLM-L6-v2 (Transformer -> Pooling(mean) ->
Normalize), folded into one graph so that the runtime needs no pooling code of its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class SentenceEmbedder(nn.Module):
    """(input_ids, attention_mask) -> unit-length sentence embeddings, shape (batch, hidden)."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert: Any = bert  # a transformers BertModel; typed loosely, its submodules are untyped

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The additive mask is built here instead of by transformers: its mask helpers trace into a
        # graph that the TorchScript exporter gets wrong (cosine 0.92 on the very trace inputs), and
        # this classic form is what onnxruntime's BERT fusions recognise.
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        encoded = self.bert.encoder(hidden, attention_mask=additive_mask)
        states = encoded[0] if isinstance(encoded, tuple) else encoded.last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        summed = (states * weights).sum(dim=1)
        counts = weights.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(summed / counts, p=2.0, dim=1)


CLASSIC_ATTENTION = "profilestream_classic"


def classic_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT attention written the way onnxruntime's fusion patterns expect it (inference only).

    transformers' own eager attention multiplies by a scale and slices the mask; both break
    onnxruntime's Attention fusion, which is the largest single CPU speed-up of the optimizer.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register_classic_attention() -> str:
    """Make `classic_attention` loadable as ``attn_implementation``; returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(CLASSIC_ATTENTION, classic_attention)
    return CLASSIC_ATTENTION
