"""``profilestream collector``: build the collector's config from the options and run it."""

from __future__ import annotations

from typing import cast

import click

from stream.core.errors import ProfilestreamError
from stream.core.settings import Settings
from stream.ingest.collector import run_collector
from stream.ingest.gateway import CollectorConfig

_DEFAULT = CollectorConfig()


@click.command("collector")
@click.option("--host", default=_DEFAULT.host, show_default=True, help="Bind address.")
@click.option("--port", default=_DEFAULT.port, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-batch-events", default=_DEFAULT.max_batch_events, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--max-body-bytes", default=_DEFAULT.max_body_bytes, show_default=True, type=click.IntRange(256)
)
@click.option(
    "--ack-timeout-s",
    default=_DEFAULT.ack_timeout_s,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Answer 503 when Kafka has not acknowledged a request's events by then.",
)
@click.option("--retry-after-s", default=_DEFAULT.retry_after_s, show_default=True, type=click.IntRange(1))
@click.option("--cors-origin", "cors_origins", multiple=True, help="Origin allowed to POST (repeatable).")
@click.pass_context
def collector_command(
    ctx: click.Context,
    *,
    host: str,
    port: int,
    max_batch_events: int,
    max_body_bytes: int,
    ack_timeout_s: float,
    retry_after_s: int,
    cors_origins: tuple[str, ...],
) -> None:
    """Run the HTTP collector (POST /v1/events -> Kafka) until Ctrl-C."""
    settings = cast(Settings, ctx.obj)
    config = CollectorConfig(
        host=host,
        port=port,
        max_batch_events=max_batch_events,
        max_body_bytes=max_body_bytes,
        ack_timeout_s=ack_timeout_s,
        retry_after_s=retry_after_s,
        cors_origins=cors_origins,
    )
    try:
        run_collector(settings, config)
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
