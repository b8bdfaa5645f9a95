"""An int8 copy of the item matrix with a proven error bound: the prefilter of exact top-K.

Scoring a batch of users against float32 vectors reads 4 bytes per coordinate; int8 codes read one
and onnxruntime's u8 x s8 kernels (VNNI where the CPU has it) multiply them several times faster
than a float32 BLAS product. User q is coded as ``q̂ = s_q * A`` (one scale per user) and item x as
``x̂ = s_x * X`` (one scale per item); the approximate score q̂·x̂ is off by at most

    |q·x - q̂·x̂| <= ||q - q̂|| * ||x|| + ||q̂|| * ||x - x̂||

`ApproximateScores` carries that bound for every user and item (a per-user offset plus a
per-user slope times the item's stored residual norm, with margins for float rounding), so
`models.index.topk` can drop every item whose score cannot reach the k-th best and re-score only the
rest exactly.

Item codes use 8 bits where onnxruntime's u8 x s8 product is exact and 7 bits (-63..63) elsewhere:
x86 kernels without VNNI multiply with an instruction that saturates a pair of products at 32767,
and 255 * 63 * 2 stays below that. `quantise_items` finds out by running a tiny product whose
exact answer saturates that instruction, rather than trusting CPU flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]  # no stubs installed
from numpy.typing import NDArray

# Item scores are padded to a multiple of this, so the score matrix reshapes into blocks.
BLOCK = 32
USER_LEVELS = 127
USER_ZERO_POINT = 128
# Relative error of onnxruntime turning an exact int32 sum into a float: a few roundings (scale
# products, int to float); 2**-20 is 16 unit roundoffs, far more than they can add up to.
_DEQUANT_REL = 2.0**-20
# The same float roundings can underflow when a result is subnormal, each losing up to half of
# the smallest float32 subnormal (2**-149); four whole steps cover them.
_DEQUANT_UNDERFLOW = 4 * 2.0**-149
# The bound is computed in float64 from float32 data; widen it so its own rounding cannot matter.
_BOUND_SLACK = 1.0 + 1e-9
_PREPARE_ROWS = 4096
_IR_VERSION = 9  # onnxruntime reads IR versions up to 13; 9 is what its own tools write


@dataclass(frozen=True, slots=True)
class ApproximateScores:
    """Approximate scores of a batch, (n_users, padded); -inf where an item may not be returned.

    Row u is in its own unit: ``unit[u] * scores[u, i]`` approximates the score (skipping that
    multiplication saves a pass over the matrix), and the exact score differs from it by at most
    ``unit[u] * (error_offset[u] + error_slope[u] * QuantisedItems.residuals[i])``.
    """

    scores: NDArray[np.float32]
    # (n_users, padded / BLOCK): the largest score of block b, the items b, b + n_blocks, ...
    # (`scores.reshape(n_users, BLOCK, n_blocks).max(axis=1)`), computed by onnxruntime's threads.
    # The caller may set scores to -inf afterwards (exclusions); these stay upper bounds.
    block_max: NDArray[np.float32]
    # (n_users, seeds): each user's `seeds` blocks with the largest maxima (ties in any order).
    top_blocks: NDArray[np.int64]
    unit: NDArray[np.float64]
    error_offset: NDArray[np.float64]
    error_slope: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class QuantisedItems:
    """The int8 item codes inside an onnxruntime session, plus what the error bound needs."""

    count: int
    dim: int
    padded: int
    item_levels: int
    residuals: NDArray[np.float64]  # ||x - x̂|| per item, rounded up
    max_norm: float  # largest ||x||
    max_code_norm: float  # largest ||x̂||
    threads: int
    session: Any  # onnxruntime.InferenceSession; not typed upstream
    # The last eligibility mask and its 0/-inf bias: the worker passes the same stock mask with
    # every batch, and rebuilding the bias cost a twentieth of a top-K call at 100k items.
    _bias_cache: list[tuple[NDArray[np.bool_] | None, NDArray[np.float32]]] = field(
        default_factory=list, repr=False, compare=False
    )

    @property
    def max_residual(self) -> float:
        """The largest item quantisation error ``||x - x̂||`` (0.0 for no items)."""
        return float(self.residuals.max(initial=0.0))

    def score(
        self,
        users: NDArray[np.float32],
        eligible: NDArray[np.bool_] | None = None,
        *,
        exact_error: float,
        exact_underflow: float,
        seeds: int = 1,
    ) -> ApproximateScores:
        """Approximate scores of `users` against every item; items not `eligible` score -inf.

        `seeds` (1 to the number of blocks) is how many of each user's best blocks to name.

        The caller's own "exact" score function is within
        ``exact_error * ||q|| * max ||x|| + exact_underflow`` of the true score; the bound relates
        the approximation to that function.
        """
        if users.ndim != 2 or users.shape[1] != self.dim:
            raise ValueError(f"users {users.shape} must be 2-D with width {self.dim}")
        if not 1 <= seeds <= self.padded // BLOCK:
            raise ValueError(f"seeds {seeds} must be between 1 and the {self.padded // BLOCK} blocks")
        users64 = users.astype(np.float64)
        peaks = np.abs(users64).max(axis=1, initial=0.0)
        unit = np.where(peaks > 0, peaks / USER_LEVELS, 1.0)
        codes = np.clip(np.rint(users64 / unit[:, None]), -USER_LEVELS, USER_LEVELS)
        user_error = np.linalg.norm(users64 - codes * unit[:, None], axis=1)
        code_norm = np.linalg.norm(codes, axis=1)
        user_norm = np.linalg.norm(users64, axis=1)
        scores, block_max, top_blocks = self.session.run(
            None,
            {
                "users": (codes + USER_ZERO_POINT).astype(np.uint8),
                "user_scale": np.asarray(1.0, dtype=np.float32),
                "bias": self._bias(eligible),
                "seeds": np.asarray([seeds], dtype=np.int64),
            },
        )
        # In row units: ||q - q̂|| * ||x|| and the exact score's own error, plus onnxruntime's
        # rounding of codes · x̂; ||q̂|| / unit is the codes' norm, so that term's slope is it.
        offset = (user_error + exact_error * user_norm) * self.max_norm / unit
        offset += (exact_underflow + _DEQUANT_UNDERFLOW) / unit
        offset += _DEQUANT_REL * code_norm * self.max_code_norm
        return ApproximateScores(
            scores=scores,
            block_max=block_max,
            top_blocks=top_blocks,
            unit=unit,
            error_offset=offset * _BOUND_SLACK,
            error_slope=code_norm * _BOUND_SLACK,
        )

    def _bias(self, eligible: NDArray[np.bool_] | None) -> NDArray[np.float32]:
        """0 for eligible items, -inf for the rest and for the padding."""
        if self._bias_cache:
            mask, bias = self._bias_cache[0]
            if (mask is None and eligible is None) or (
                mask is not None and eligible is not None and np.array_equal(mask, eligible)
            ):
                return bias
        bias = np.full(self.padded, -np.inf, dtype=np.float32)
        bias[: self.count] = 0.0 if eligible is None else np.where(eligible, np.float32(0), -np.inf)
        # A copy of the mask: the caller may change its array in place before the next call.
        self._bias_cache[:] = [(None if eligible is None else eligible.copy(), bias)]
        return bias


def quantise_items(vectors: NDArray[np.float32], *, threads: int = 0) -> QuantisedItems:
    """Quantise the (n, dim) item matrix and build the scoring session (once per index load).

    `vectors`: (n_items, dim) float32. `threads` is onnxruntime's intra-op thread count (0: one
    per core). Memory: about 1 byte per coordinate for the codes plus onnxruntime's packed copy.
    Raises `ValueError` unless the matrix is 2-D and finite.
    """
    if vectors.ndim != 2:
        raise ValueError(f"item matrix has shape {vectors.shape}, expected (n_items, dim)")
    count, dim = vectors.shape
    levels = 127 if _u8s8_product_is_exact(dim) else 63
    padded = max(BLOCK, -(-count // BLOCK) * BLOCK)
    codes_t = np.zeros((dim, padded), dtype=np.int8)  # the layout MatMulIntegerToFloat wants
    item_scales = np.ones(padded, dtype=np.float32)
    residuals = np.zeros(count)
    norms = np.zeros(count)
    code_norms = np.zeros(count)
    # Row chunks keep the float64 temporaries in cache; at 1M items the whole-matrix version
    # spent most of its time in memory traffic.
    for start in range(0, count, _PREPARE_ROWS):
        stop = min(start + _PREPARE_ROWS, count)
        chunk = np.asarray(vectors[start:stop], dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise ValueError(
                f"item matrix holds NaN or infinite values in rows {start}..{stop - 1}; re-encode the index"
            )
        peaks = np.abs(chunk).max(axis=1, initial=0.0)
        scales = np.where(peaks > 0, peaks / np.float32(levels), np.float32(1)).astype(np.float32)
        # Any integer codes are valid (the bound uses the actual residual), so float32 will do.
        codes = np.clip(np.rint(chunk / scales[:, None]), -levels, levels)
        codes_t[:, start:stop] = codes.T
        item_scales[start:stop] = scales
        # float32 scale x integer code is exact in float64: these are the session's x̂ values.
        exact = chunk.astype(np.float64)
        dequantised = codes.astype(np.float64) * scales[:, None]
        norms[start:stop] = np.einsum("ij,ij->i", exact, exact)
        code_norms[start:stop] = np.einsum("ij,ij->i", dequantised, dequantised)
        exact -= dequantised
        residuals[start:stop] = np.einsum("ij,ij->i", exact, exact)

    def largest(squares: NDArray[np.float64]) -> float:
        return float(np.sqrt(squares.max(initial=0.0))) * _BOUND_SLACK

    return QuantisedItems(
        count=count,
        dim=dim,
        padded=padded,
        item_levels=levels,
        residuals=np.sqrt(residuals) * _BOUND_SLACK,
        max_norm=largest(norms),
        max_code_norm=largest(code_norms),
        threads=threads,
        session=_session(codes_t, item_scales, threads),
    )


def _session(codes_t: NDArray[np.int8], item_scales: NDArray[np.float32], threads: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    dim, padded = codes_t.shape
    n_blocks = padded // BLOCK
    nodes = [
        helper.make_node(
            "MatMulIntegerToFloat",
            ["users", "items", "user_scale", "item_scales", "user_zero_point", "", "bias"],
            ["scores"],
            domain="com.microsoft",
        ),
        # Block maxima and each user's best blocks inside the session, on its threads; in numpy
        # they were a sixth of a top-K call, on one core.
        helper.make_node("Reshape", ["scores", "block_shape"], ["blocks"]),
        helper.make_node("ReduceMax", ["blocks"], ["block_max"], axes=[1], keepdims=0),
        helper.make_node("TopK", ["block_max", "seeds"], ["top_block_max", "top_blocks"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "quantised_scores",
        [
            helper.make_tensor_value_info("users", TensorProto.UINT8, [None, dim]),
            helper.make_tensor_value_info("user_scale", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [padded]),
            helper.make_tensor_value_info("seeds", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, padded]),
            helper.make_tensor_value_info("block_max", TensorProto.FLOAT, [None, n_blocks]),
            helper.make_tensor_value_info("top_blocks", TensorProto.INT64, [None, None]),
        ],
        [
            numpy_helper.from_array(np.asarray([-1, BLOCK, n_blocks], dtype=np.int64), "block_shape"),
            numpy_helper.from_array(codes_t, "items"),
            numpy_helper.from_array(item_scales, "item_scales"),
            numpy_helper.from_array(np.asarray(USER_ZERO_POINT, dtype=np.uint8), "user_zero_point"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = _IR_VERSION
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning pool threads would compete with the numpy selection that follows each call on a
    # 2-core machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _u8s8_product_is_exact(dim: int) -> bool:
    """Whether onnxruntime's u8 x s8 product is exact for full-range codes on this CPU.

    Every user code 255 against item codes of +-127: each pair of products is 64770, which the
    non-VNNI x86 instruction would saturate to 32767.
    """
    from onnx import TensorProto, helper, numpy_helper

    items = np.tile(np.array([127, -127], dtype=np.int8), (dim, BLOCK))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["users", "items"], ["products"])],
        "u8s8_probe",
        [helper.make_tensor_value_info("users", TensorProto.UINT8, [None, dim])],
        [helper.make_tensor_value_info("products", TensorProto.INT32, [None, 2 * BLOCK])],
        [numpy_helper.from_array(items, "items")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = _IR_VERSION
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    users = np.full((32, dim), 255, dtype=np.uint8)
    (products,) = session.run(None, {"users": users})
    expected = users.astype(np.int64) @ items.astype(np.int64)
    return bool(np.array_equal(products, expected))
