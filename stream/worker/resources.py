"""Opening what a worker needs at start-up: the encoder, the item index and the Redis writers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from models.encoder.onnx_encoder import load_encoder, options_from_settings
from stream.core.settings import Settings
from stream.profiles.catalogue import load_catalogue
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.redis.activity import EventSink, RedisActivitySink
from stream.redis.reco_store import RecoStore

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """Resources a worker opens once at start-up (the model and index are loaded here)."""

    computer: ProfileComputer
    store: RecoStore
    activity: EventSink


def open_worker_state(settings: Settings) -> WorkerState:
    encoder = load_encoder(Path(settings.model_dir), options_from_settings(settings))
    catalogue = load_catalogue(settings, encoder.model_version)
    log.info(
        "worker ready: encoder %s (dim %d), %d items in the index",
        encoder.model_version,
        encoder.dim,
        len(catalogue.ids),
    )
    return WorkerState(
        computer=ProfileComputer(encoder, catalogue, ProfileConfig.from_settings(settings)),
        store=RecoStore.from_settings(settings),
        activity=RedisActivitySink.from_settings(settings),
    )
