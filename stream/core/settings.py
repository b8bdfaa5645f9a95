"""The one settings class of profilestream.

It is built once, at the entrypoint (`load_settings`), and passed down; no other module reads the
environment. Every field is set by ``PROFILESTREAM_<FIELD NAME IN CAPITALS>``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.core.errors import ConfigError

ENV_PREFIX = "PROFILESTREAM_"

# Kafka's own rule for topic names (legal characters and length).
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT_RE = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_KEY_PREFIX_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# 1990-01-01T00:00:00Z: older event times are almost surely seconds mistaken for milliseconds.
DEFAULT_MIN_TS_MS = 631_152_000_000
# Room a produced record needs besides its value: its key (a dead letter's is cut to 1 KiB) and
# headers (a dead letter's reason is cut to 1 KiB), plus Kafka's record and batch framing.
RECORD_OVERHEAD_BYTES = 8_192

Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    """Everything an operator can configure; the README's configuration table mirrors it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    events_topic: str = Field("profilestream.events.v1", description="Behaviour events, keyed by user_id.")
    dead_letter_topic: str = Field(
        "profilestream.events.dlq.v1",
        description="Malformed events: original bytes, reason in headers.",
    )
    events_partitions: int = Field(4, ge=1, le=1024, description="Partitions of the events topic.")
    events_retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description=(
            "retention.ms of the events topic, set when `profilestream topics` creates it (-1: "
            "forever). A forgotten user's events stay in the topic until this runs out."
        ),
    )
    dead_letter_retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description=(
            "retention.ms of the dead-letter topic, set when it is created (-1: forever). A "
            "forgotten user's rejected events stay there until this runs out."
        ),
    )
    kafka_replication_factor: int = Field(
        0,
        ge=0,
        le=16,
        description=(
            "Replication of the topics profilestream creates (0: as many copies as the cluster has "
            "brokers, at most 3); min.insync.replicas is 2 at 3 copies or more, else 1."
        ),
    )
    kafka_session_timeout_s: int = Field(
        15, ge=6, le=300, description="A worker that stops heartbeating loses its partitions after this."
    )
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=30_000,
        description="Longest a worker's fetch waits at the broker for partitions with no new records.",
    )
    consumer_group: str = Field(
        "profilestream", description="Faust app id = Kafka consumer group shared by all workers."
    )
    kafka_request_timeout_ms: int = Field(
        30_000,
        ge=11_000,  # kafka-python's consumer needs it above its 10 s session timeout
        le=300_000,
        description=(
            "Longest wait for one broker reply in the admin and offset clients (`topics`, lag and "
            "drain checks); kafka-python's consumer default is 305 s."
        ),
    )

    # --- Redis -----------------------------------------------------------------------------
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis://, rediss:// (TLS) or unix:// URL; may hold a password, so it is secret.",
    )
    redis_key_prefix: str = Field(
        "profilestream:v1",
        description="Prefix of every key written (no braces: the user id is each key's hash tag).",
    )
    redis_cluster: bool = Field(
        False,
        description=(
            "Talk to a Redis Cluster: PROFILESTREAM_REDIS_URL names one of its nodes, the client "
            "discovers the others and follows slot moves and failovers."
        ),
    )
    redis_connect_timeout_s: float = Field(
        5.0, gt=0, le=300, description="Longest wait for a TCP/TLS connection to Redis to open."
    )
    redis_socket_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "Longest wait for one Redis reply (a batch's whole pipeline included); a Redis that "
            "hangs (paused, network path dropped) fails a call after this instead of forever."
        ),
    )
    redis_health_check_interval_s: int = Field(
        15,
        ge=0,
        le=3600,
        description="A pooled Redis connection idle longer than this is PINGed before reuse (0: never).",
    )
    redis_retry_attempts: int = Field(
        2,
        ge=0,
        le=20,
        description=(
            "Retries of one Redis call after a connection error or timeout, with exponential "
            "backoff, before the caller sees the error (the worker then keeps retrying its batch)."
        ),
    )
    redis_retry_backoff_max_s: float = Field(
        1.0, gt=0, le=60, description="Cap of the exponential backoff between Redis retries."
    )

    # --- Model, index and local state -------------------------------------------------------
    model_dir: Path = Field(Path("var/model"), description="Exported ONNX encoder and its manifest.")
    index_dir: Path = Field(Path("var/index"), description="Item embeddings, ids and manifest.")
    data_dir: Path = Field(Path("var/data"), description="Worker state (Faust tables, RocksDB).")

    # --- Encoder (onnxruntime) ----------------------------------------------------------------
    encoder_provider: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto takes CUDA when onnxruntime can use it, else CPU."
    )
    encoder_intra_op_threads: int = Field(
        0, ge=0, le=256, description="ORT intra-op threads (0 = all cores)."
    )
    encoder_inter_op_threads: int = Field(1, ge=0, le=256, description="ORT inter-op threads.")
    encoder_max_length: int = Field(256, ge=8, le=512, description="Token limit of encoder inputs.")
    encoder_batch_size: int = Field(64, ge=1, le=4096, description="Texts per encoder call.")

    # --- Windows and ranking ----------------------------------------------------------------
    window_max_events: int = Field(50, ge=1, le=10_000, description="Events kept per user window.")
    window_cache_users: int = Field(
        20_000,
        ge=0,
        le=10_000_000,
        description="Decoded windows a worker keeps in memory (0: none); about 10 KB each at 50 events.",
    )
    window_max_age_s: int = Field(
        30 * 24 * 3600, ge=1, description="Events older than this (event time) leave the window."
    )
    window_half_life_s: int = Field(
        7 * 24 * 3600, ge=1, description="Event weights halve per this much event time."
    )
    event_type_weights: str = Field(
        "purchase=5,add_to_cart=3,click=2,view=1,search=0.5",
        description="Weight of each event type in the profile (type=weight, comma-separated).",
    )
    top_k: int = Field(20, ge=1, le=1000, description="Recommendations written per user.")
    user_vector: Literal["auto", "text", "items", "hybrid", "sequence", "last_item"] = Field(
        "auto",
        description=(
            "User vector: encoded profile text, decayed mean of item vectors, a mix, the trained "
            "sequence tower over the window's item vectors (needs sequence_model_dir), or the newest "
            "item's vector; auto = the best measured: sequence when sequence_model_dir holds a "
            "tower, else last_item."
        ),
    )
    sequence_model_dir: Path = Field(
        Path("var/sequence"),
        description=(
            "Exported sequence user tower (sequence_manifest.json + ONNX), read when "
            "user_vector=sequence; `profilestream train` then `profilestream export --sequence`."
        ),
    )
    sequence_intra_op_threads: int = Field(
        1,
        ge=0,
        le=256,
        description=(
            "ORT intra-op threads of the worker's sequence tower (0 = all cores); one, because a "
            "second spinning thread cost 25 % more CPU per profile beside the event loop."
        ),
    )
    hybrid_text_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the text vector in the hybrid user vector."
    )
    popularity_weight: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description=(
            "Recommendation score = cosine + this x ln(1 + the catalogue's popularity count); "
            "0 = cosine only. 0.05 is the training temperature (logQ correction)."
        ),
    )
    mmr_lambda: float = Field(
        1.0, ge=0.0, le=1.0, description="MMR diversity: 1 = pure relevance, lower = more diverse."
    )
    exclude_purchased: bool = Field(
        True,
        description="Never recommend an item the user's window holds a purchase of (false: repeat "
        "purchases allowed, e.g. for consumables).",
    )
    reco_ttl_s: int = Field(
        30 * 24 * 3600, ge=0, description="Expiry of a user's reco and emb keys (0 = never)."
    )
    # Forward decay multiplies by 2^((t - 2020) / half-life), which must stay below 2^1024:
    # 7 days lasts until 2039, 1 day would already have overflowed in 2022.
    popularity_half_life_s: int = Field(
        7 * 24 * 3600,
        ge=7 * 24 * 3600,
        description="Half-life of the popular-items fallback counts (at least 7 days).",
    )

    # --- Personalised search (GET /v1/search) ------------------------------------------------
    search_blend_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of the profile match in personalised search scores (0 = query only).",
    )
    search_recent_query_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of the user's recent search queries in the profile that search blends in.",
    )
    search_candidates: int = Field(
        200, ge=1, le=100_000, description="Items retrieved by query similarity before re-ranking."
    )
    search_query_cache_size: int = Field(
        10_000, ge=0, le=10_000_000, description="Query vectors kept in search's LRU cache (0 = none)."
    )
    search_encoder_intra_op_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="ORT intra-op threads of the search encoder in serve-lookups (0 = all cores).",
    )

    # --- Security ----------------------------------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects (workers, collector, SDK, replay)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism for the SASL_* protocols."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (SASL_* protocols).")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) for Kafka TLS; system CAs if unset."
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for Kafka mutual TLS."
    )
    kafka_ssl_key_file: Path | None = Field(None, description="Client key (PEM) for Kafka mutual TLS.")
    redis_ssl_ca_file: Path | None = Field(None, description="CA bundle (PEM) for a rediss:// URL.")
    redis_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for Redis mutual TLS."
    )
    redis_ssl_key_file: Path | None = Field(None, description="Client key (PEM) for Redis mutual TLS.")
    collector_token: SecretStr | None = Field(
        None, description="Bearer token the collector requires on POST /v1/events (unset: open)."
    )
    collector_rate_limit_per_s: float = Field(
        0.0, ge=0.0, description="Requests per second per client address the collector accepts (0: no limit)."
    )
    collector_rate_burst: int = Field(
        20, ge=1, le=100_000, description="Requests a client may send at once above the rate limit."
    )
    lookup_redis_budget_ms: int = Field(
        2_000,
        ge=10,
        le=300_000,
        description=(
            "Longest the lookups (recommendations, search) wait for Redis in one request, retries "
            "included; past it recommendations answer 503 with Retry-After and search ranks by the "
            "query alone."
        ),
    )
    console_worker_metrics_urls: str = Field(
        "",
        description=(
            "Comma-separated worker /metrics URLs whose throughput, lag and freshness the lookups "
            "server's /console charts (empty: http://127.0.0.1:{worker_web_port}/metrics)."
        ),
    )
    console_scrape_timeout_ms: int = Field(
        1_000,
        ge=10,
        le=60_000,
        description="Longest the console waits for one worker's /metrics; a slower worker shows as down.",
    )

    # --- Worker ------------------------------------------------------------------------------
    batch_max_events: int = Field(500, ge=1, le=100_000, description="Micro-batch size cap.")
    batch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description=(
            "Micro-batch interval: a batch that is not full is taken this long after the previous "
            "one was taken, once no more records wait."
        ),
    )
    table_store: Literal["memory", "rocksdb"] = Field("memory", description="Faust table store.")
    worker_compute: Literal["thread", "process"] = Field(
        "process",
        description=(
            "Where the worker computes and writes its profiles: a child process with its own "
            "model and index (about twice the memory; uses a second core beside the event loop) "
            "or a thread of the worker's process (one interpreter lock for both)."
        ),
    )
    worker_web_host: str = Field("127.0.0.1", description="Bind address of the worker's web server.")
    worker_web_port: Port = Field(6066, description="Port of the worker's web server (health, metrics).")
    recent_events_per_user: int = Field(
        50, ge=1, le=10_000, description="Length of each user's recent-activity list in Redis."
    )
    window_max_bytes: int = Field(
        262_144,
        ge=1_024,
        le=1_000_000,
        description=(
            "Largest stored window (its changelog record's value, UTF-8 JSON, bytes); the oldest "
            "events leave first when it would be larger."
        ),
    )
    dead_letter_max_payload_bytes: int = Field(
        65_536,
        ge=0,
        le=1_000_000,
        description=(
            "Bytes of a rejected record's original value copied into its dead letter (a prefix; "
            "its full size and sha256 travel in headers)."
        ),
    )
    kafka_record_max_bytes: int = Field(
        1_000_000,
        ge=65_536,
        le=100_000_000,
        description=(
            "Largest record the worker produces (Faust's producer_max_request_size); keep it at "
            "or under the topics' max.message.bytes."
        ),
    )
    user_retention_s: int = Field(
        90 * 24 * 3600,
        ge=0,
        description=(
            "Seconds a user may stay inactive before the worker removes their window from the "
            "table (a changelog tombstone). Inactive: the newest receive time in the window is "
            "older than the partition's newest record time less this. 0 = keep every user forever."
        ),
    )
    retention_sweep_users_per_batch: int = Field(
        200,
        ge=1,
        le=100_000,
        description=(
            "Stored windows the retention sweep checks after each batch; the sweep walks the table "
            "a little per batch instead of all at once."
        ),
    )
    recent_ttl_s: int = Field(
        30 * 24 * 3600,
        ge=0,
        description="Expiry of a user's recent-activity list, renewed by each write (0 = never).",
    )
    forget_tombstone_ttl_s: int = Field(
        30 * 24 * 3600,
        ge=0,
        description=(
            "Expiry of a forget tombstone in Redis (0 = never). It must outlive the events topic's "
            "retention (events_retention_ms), or a replay of old events could bring the user back."
        ),
    )
    identity_link_ttl_s: int = Field(
        90 * 24 * 3600,
        ge=0,
        description=(
            "Expiry of an anonymous-to-known identity link in Redis, renewed by each login that "
            "names it (0 = never): while it lives, a forget of either id forgets both."
        ),
    )
    popular_max_items: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Items kept in the popular-items sorted set; the lowest-scored are trimmed.",
    )
    sdk_max_pending_sends: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description=(
            "Events the Python SDK may hold unacknowledged; track() then waits for the broker "
            "(up to its flush timeout) and fails with Overloaded if still full."
        ),
    )
    search_max_queued_queries: int = Field(
        1_024,
        ge=1,
        le=1_000_000,
        description=(
            "Query texts waiting for the search encoder; a search beyond it is refused with "
            "Overloaded (HTTP 503) instead of queuing without end."
        ),
    )
    poison_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description=(
            "Times a record that fails on its own with an unexpected error is tried before it is "
            "quarantined to the dead-letter topic."
        ),
    )

    # --- Event validation limits ------------------------------------------------------------
    event_max_bytes: int = Field(16_384, ge=256, le=1_048_576, description="Largest accepted event.")
    event_min_ts_ms: int = Field(DEFAULT_MIN_TS_MS, ge=0, description="Oldest accepted event time.")
    event_max_future_skew_s: int = Field(
        86_400, ge=0, description="How far past the wall clock an event time may lie."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",")]
        bad = [s for s in servers if not _HOST_PORT_RE.match(s)]
        if bad or not servers:
            raise ValueError(f"expected comma-separated host:port pairs, got {bad or value!r}")
        return ",".join(servers)

    @field_validator("events_topic", "dead_letter_topic", "consumer_group")
    @classmethod
    def _check_topic_name(cls, value: str) -> str:
        if not _TOPIC_RE.match(value) or value in {".", ".."}:
            raise ValueError("use 1-249 characters from A-Z a-z 0-9 . _ - (Kafka's rule for names)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a URL starting with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_key_prefix")
    @classmethod
    def _check_key_prefix(cls, value: str) -> str:
        if not _KEY_PREFIX_RE.match(value):
            raise ValueError("use 1-64 characters from A-Z a-z 0-9 . _ : -")
        return value

    @field_validator("event_type_weights")
    @classmethod
    def _check_type_weights(cls, value: str) -> str:
        parse_type_weights(value)
        return value

    @model_validator(mode="after")
    def _check_record_sizes(self) -> Settings:
        """Refuse limits whose worst case cannot fit one Kafka record: such a write would fail
        every time the worker retried it."""
        problems = []
        room = self.kafka_record_max_bytes - RECORD_OVERHEAD_BYTES
        if self.window_max_bytes > room:
            problems.append(
                f"PROFILESTREAM_WINDOW_MAX_BYTES={self.window_max_bytes} cannot fit one changelog "
                f"record of PROFILESTREAM_KAFKA_RECORD_MAX_BYTES={self.kafka_record_max_bytes} "
                f"(less {RECORD_OVERHEAD_BYTES} bytes for key and headers): lower it to {room} or less"
            )
        if self.dead_letter_max_payload_bytes > room:
            problems.append(
                f"PROFILESTREAM_DEAD_LETTER_MAX_PAYLOAD_BYTES={self.dead_letter_max_payload_bytes} "
                f"cannot fit one dead-letter record of PROFILESTREAM_KAFKA_RECORD_MAX_BYTES="
                f"{self.kafka_record_max_bytes} (less {RECORD_OVERHEAD_BYTES} bytes for key and "
                f"headers): lower it to {room} or less"
            )
        if self.event_max_bytes > self.window_max_bytes:
            problems.append(
                f"PROFILESTREAM_EVENT_MAX_BYTES={self.event_max_bytes} is over "
                f"PROFILESTREAM_WINDOW_MAX_BYTES={self.window_max_bytes}: one accepted event could "
                "not fit a window; raise the window limit or lower the event limit"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _check_tombstone_outlives_events(self) -> Settings:
        """A forget tombstone that expires while the user's old events are still in the topic
        would let a replay of them bring the forgotten user back."""
        ttl_s, events_ms = self.forget_tombstone_ttl_s, self.events_retention_ms
        if ttl_s == 0:
            return self
        if events_ms == -1:
            raise ValueError(
                f"PROFILESTREAM_FORGET_TOMBSTONE_TTL_S={ttl_s} expires forget tombstones, but "
                "PROFILESTREAM_EVENTS_RETENTION_MS=-1 keeps events forever: a replay could bring a "
                "forgotten user back; set PROFILESTREAM_FORGET_TOMBSTONE_TTL_S=0 (never expire)"
            )
        if ttl_s * 1000 <= events_ms:
            raise ValueError(
                f"PROFILESTREAM_FORGET_TOMBSTONE_TTL_S={ttl_s} ({ttl_s * 1000} ms) must be longer "
                f"than PROFILESTREAM_EVENTS_RETENTION_MS={events_ms}: a replay of events still in "
                f"the topic could bring a forgotten user back; raise it above {events_ms // 1000} s"
            )
        return self

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        problems = []
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            problems.append(
                f"PROFILESTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "PROFILESTREAM_KAFKA_SASL_USERNAME and PROFILESTREAM_KAFKA_SASL_PASSWORD"
            )
        for prefix in ("kafka", "redis"):
            cert, key = getattr(self, f"{prefix}_ssl_cert_file"), getattr(self, f"{prefix}_ssl_key_file")
            if (cert is None) != (key is None):
                problems.append(
                    f"set both PROFILESTREAM_{prefix.upper()}_SSL_CERT_FILE and "
                    f"PROFILESTREAM_{prefix.upper()}_SSL_KEY_FILE (mutual TLS), or neither"
                )
        redis_tls_files = (self.redis_ssl_ca_file, self.redis_ssl_cert_file)
        if any(redis_tls_files) and not self.redis_url.get_secret_value().startswith("rediss://"):
            problems.append("PROFILESTREAM_REDIS_SSL_* files need a rediss:// PROFILESTREAM_REDIS_URL")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def type_weights(self) -> dict[str, float]:
        return parse_type_weights(self.event_type_weights)

    @property
    def kafka_servers(self) -> list[str]:
        return self.kafka_bootstrap_servers.split(",")

    def redis_key(self, kind: str, user_id: str) -> str:
        """The key of one user's entry of a given kind, e.g. ``profilestream:v1:{u42}:recent``.

        Key schema v2: the user id is the key's hash tag, so every key of one user lies in one
        Redis Cluster slot (one Lua script can read and write them all). Braces and ``%`` in the
        id are %-escaped: the tag is then the whole id, never empty, and distinct ids stay
        distinct. The braces right after the prefix also set v2 keys apart from v1 ones
        (``{prefix}:{kind}:{user_id}``), whose kind follows the prefix.
        """
        return f"{self.redis_key_prefix}:{{{redis_tag(user_id)}}}:{kind}"


def redis_tag(user_id: str) -> str:
    """A user id as a Redis hash tag: ``%``, ``{`` and ``}`` %-escaped (injective, never empty)."""
    return user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


_WEIGHTED_TYPES = ("purchase", "add_to_cart", "click", "view", "search")


def parse_type_weights(value: str) -> dict[str, float]:
    """Parse ``type=weight,...``; every behaviour type must be given a non-negative weight."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, number = part.partition("=")
        if not sep or name.strip() not in _WEIGHTED_TYPES:
            allowed = ", ".join(_WEIGHTED_TYPES)
            raise ValueError(f"expected type=weight with a type from {allowed}, got {part!r}")
        try:
            weight = float(number)
        except ValueError as exc:
            raise ValueError(f"weight of {name.strip()!r} is not a number: {number!r}") from exc
        if not weight >= 0:  # also rejects NaN
            raise ValueError(f"weight of {name.strip()!r} must be >= 0")
        weights[name.strip()] = weight
    missing = [t for t in _WEIGHTED_TYPES if t not in weights]
    if missing:
        raise ValueError(f"no weight given for {', '.join(missing)}")
    return weights


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def as_environment(settings: Settings) -> dict[str, str]:
    """The ``PROFILESTREAM_*`` variables that rebuild `settings` in a child process (secrets in clear)."""
    env = {}
    for name, value in settings:
        if value is None:  # unset optional settings stay unset
            continue
        env[env_name(name)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def child_environment(base: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """`base` (a parent's environment) with its own ``PROFILESTREAM_*`` replaced by `settings`."""
    env = {key: value for key, value in base.items() if not key.startswith(ENV_PREFIX)}
    env.update(as_environment(settings))
    return env


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Build the settings from `environ` (the process environment at the entrypoint) and overrides.

    Raises ConfigError naming every bad or unknown ``PROFILESTREAM_*`` variable and how to fix it.
    """
    problems = _unknown_variables(environ)
    values: dict[str, Any] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields
    }
    values.update(overrides)
    settings: Settings | None = None
    try:
        # Values come in explicitly so that the environment is read once, here, and nowhere else.
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
        if not problems:  # pragma: no cover - pydantic always reports at least one error
            raise ConfigError(str(exc)) from exc
        raise ConfigError(_join(problems)) from exc
    if problems:
        raise ConfigError(_join(problems))
    return settings


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    known = [env_name(name) for name in Settings.model_fields]
    problems = []
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see the configuration table in README.md"
            problems.append(f"{key}: unknown setting; {hint}")
    return problems


def _describe(error: Mapping[str, Any]) -> str:
    if not error.get("loc"):
        # A rule across settings: its message names every variable involved.
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    name = env_name(field) if field in Settings.model_fields else field
    description = Settings.model_fields[field].description if field in Settings.model_fields else None
    hint = f" ({description})" if description else ""
    shown = error.get("input")
    # Never echo a secret (a Redis URL may carry a password) into a log or terminal.
    secret = field in Settings.model_fields and "SecretStr" in str(Settings.model_fields[field].annotation)
    shown_text = "" if secret or isinstance(shown, dict) else f" got {shown!r};"
    return f"{name}:{shown_text} {error['msg']}; set {name} to a valid value{hint}"


def _join(problems: list[str]) -> str:
    return "invalid configuration:\n  - " + "\n  - ".join(problems)
