"""Parity between the PyTorch model and an exported ONNX variant: fixed texts and cosine figures.

Pure numpy; the export fails (raises) when any text's cosine falls under `MIN_COSINE`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.encoder.manifest import Parity
from stream.core.errors import ModelError

MIN_COSINE = 0.999

_LONG_DESCRIPTION = (
    "Heavy-duty stapler for office and home use. Staples up to 40 sheets of 20 lb paper with "
    "little effort thanks to its spring-powered mechanism; the non-slip rubber base protects "
    "desks, and the built-in staple remover and refill window make it easy to keep working. "
    "Includes 1000 standard staples, works with 1/4 inch and 5/16 inch staples, and is backed by "
    "a five-year limited warranty. Dimensions 7.5 x 2.1 x 3.8 inches, weight 1.2 pounds. "
) * 4

# Varied on purpose: titles of a few tokens, descriptions past the token limit (truncation), an
# empty string, non-ASCII text, and mixed lengths in one batch so that padding is exercised.
PARITY_TEXTS: tuple[str, ...] = (
    "Scotch Magic Tape",
    "HP 74 Black & 75 Tri-color Original Ink Cartridges, 2 Cartridges (CB335WN, CB337WN)",
    "pens",
    "",
    "Café crème notebook — A5, 80 sheets, dotted ¼ inch grid",
    "AmazonBasics Hanging File Folders - Letter Size, Green, 25-Pack",
    _LONG_DESCRIPTION,
    "Sharp Electronics EL243SB 8-Digit Twin Powered Calculator | Sharp | Office Electronics | "
    + _LONG_DESCRIPTION[:400],
    "ergonomic mesh office chair with lumbar support and adjustable armrests",
    "USB-C hub 7-in-1",
)


def cosine_rows(reference: NDArray[np.float32], candidate: NDArray[np.float32]) -> NDArray[np.float64]:
    """Cosine of each row pair, computed in float64 so that the check itself adds no rounding."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosines: NDArray[np.float64] = (ref * cand).sum(axis=1) / np.maximum(norms, 1e-12)
    return cosines


def measure_parity(reference: NDArray[np.float32], candidate: NDArray[np.float32]) -> Parity:
    if reference.shape != candidate.shape:
        raise ModelError(
            f"parity check: ONNX output has shape {candidate.shape}, PyTorch {reference.shape}; "
            "the export is broken, report it with the source checkpoint"
        )
    cosines = cosine_rows(reference, candidate)
    return Parity(
        checked=True,
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        n_texts=len(cosines),
    )


def require_parity(parity: Parity, variant: str, onnx_path: Path, threshold: float = MIN_COSINE) -> None:
    if parity.checked and (parity.min_cosine is None or parity.min_cosine < threshold):
        raise ModelError(
            f"parity check failed for variant {variant} ({onnx_path}): min cosine {parity.min_cosine} "
            f"< {threshold} over {parity.n_texts} texts; the ONNX graph does not compute what PyTorch "
            "does: try another --attention or variant, or report the checkpoint"
        )
