"""Opening what a worker needs at start-up: the encoder, the item index and the Redis writers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from models.encoder.onnx_encoder import load_encoder, options_from_settings
from models.encoder.sequence_tower import SequenceTower
from stream.core.errors import ModelError
from stream.core.settings import Settings
from stream.profiles.catalogue import load_catalogue
from stream.profiles.computer import ProfileComputer, ProfileConfig, user_vector_mode
from stream.redis.activity import ActivitySink, RedisActivitySink
from stream.redis.reco_store import RecoStore

log = logging.getLogger(__name__)

# Whichever process computes (the worker, or its compute process) runs its products on one BLAS
# thread: the event loop has the other core.
COMPUTE_BLAS_THREADS = 1
# Python's defaults are (700, 10, 10); the worker's garbage is nearly all acyclic (stream.worker.app).
WORKER_GC_THRESHOLDS = (50_000, 20, 100)


@dataclass
class WorkerState:
    """Resources a worker opens once at start-up (the model and index are loaded here)."""

    computer: ProfileComputer
    store: RecoStore
    activity: ActivitySink


def open_computer(settings: Settings) -> ProfileComputer:
    """The encoder, the item index and (for `user_vector=sequence`) the tower, as a `ProfileComputer`:
    the worker and the offline recomputation open it the same way."""
    encoder = load_encoder(Path(settings.model_dir), options_from_settings(settings))
    catalogue = load_catalogue(settings, encoder.model_version)
    log.info(
        "worker ready: encoder %s (dim %d), %d items in the index",
        encoder.model_version,
        encoder.dim,
        len(catalogue.ids),
    )
    tower = None
    if user_vector_mode(settings) == "sequence":
        tower = SequenceTower(
            Path(settings.sequence_model_dir),
            provider=settings.encoder_provider,
            intra_op_threads=settings.sequence_intra_op_threads,
        )
        if tower.manifest.item_model_version not in ("", encoder.model_version):
            # The tower reads the index's item vectors: from another encoder they mean nothing to it.
            raise ModelError(
                f"sequence tower {settings.sequence_model_dir} was trained on item vectors of encoder "
                f"{tower.manifest.item_model_version} but the worker's encoder is {encoder.model_version}; "
                "retrain it with `profilestream train` against PROFILESTREAM_MODEL_DIR"
            )
        log.info("user vectors: sequence tower %s", tower.version)
    return ProfileComputer(encoder, catalogue, ProfileConfig.from_settings(settings), tower)


def open_worker_state(settings: Settings) -> WorkerState:
    return WorkerState(
        computer=open_computer(settings),
        store=RecoStore.from_settings(settings),
        activity=RedisActivitySink.from_settings(settings),
    )
