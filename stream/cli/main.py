"""The `profilestream` command line: the one entrypoint that reads the environment."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from pydantic import SecretStr

from stream.core.errors import ConfigError, ProfilestreamError
from stream.core.logs import configure_logging
from stream.core.settings import Settings, env_name, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context) -> Settings:
    return cast(Settings, ctx.obj)


def _friendly_errors(func: F) -> F:
    """Turn profilestream's own errors into a one-paragraph message and a non-zero exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProfilestreamError as exc:
            click.echo(f"profilestream: error: {exc}", err=True)
            sys.exit(2 if isinstance(exc, ConfigError) else 1)

    return cast(F, wrapper)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """profilestream: real-time e-commerce user profiles on Kafka, Faust, ONNX and Redis."""
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        click.echo(f"profilestream: error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    ctx.obj = settings


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Show the effective settings (secrets masked) and the variable that sets each."""
    settings = _settings(ctx)
    rows = {
        env_name(name): "**********" if isinstance(value, SecretStr) else str(value)
        for name, value in settings
    }
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(map(len, rows))
    for name, value in rows.items():
        click.echo(f"{name:<{width}}  {value}")


@main.command()
@click.pass_context
@_friendly_errors
def topics(ctx: click.Context) -> None:
    """Create the events and dead-letter topics where missing."""
    from stream.kafka.topics import ensure_topics

    ensure_topics(_settings(ctx))


@main.command()
@click.option("--namespace", default=None, help="Process a shadow run's topics and keys (see replay).")
@click.pass_context
@_friendly_errors
def worker(ctx: click.Context, namespace: str | None) -> None:
    """Run a stream worker (Faust) until Ctrl-C; start several to share the partitions."""
    from stream.core.namespace import namespaced
    from stream.worker.app import run_worker

    settings = _settings(ctx)
    run_worker(namespaced(settings, namespace) if namespace else settings)


@main.command("produce-sample")
@click.option("--users", default=50, show_default=True, help="Distinct users.")
@click.option("--events", default=1000, show_default=True, help="Events to produce.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same events).")
@click.pass_context
@_friendly_errors
def produce_sample(ctx: click.Context, users: int, events: int, seed: int) -> None:
    """Produce a reproducible synthetic event stream to the events topic."""
    from stream.core.sample import SampleSpec, sample_events
    from stream.ingest.producer import EventProducer
    from stream.kafka.topics import ensure_topics

    settings = _settings(ctx)
    ensure_topics(settings)
    with EventProducer(settings) as producer:
        sent = producer.send_many(sample_events(SampleSpec(users=users, events=events, seed=seed)))
    click.echo(f"produced {sent} events to {settings.events_topic}")


@main.group()
def redis() -> None:
    """Maintenance of profilestream's keys in Redis."""


@redis.command("migrate-keys")
@click.option("--dry-run", is_flag=True, help="Count the v1 keys without copying or deleting any.")
@click.option("--batch", default=500, show_default=True, help="Keys per SCAN call and per round trip.")
@click.pass_context
@_friendly_errors
def migrate_keys_command(ctx: click.Context, dry_run: bool, batch: int) -> None:
    """Move key schema v1 keys to v2 (one hash slot per user), keeping expiries; safe to rerun."""
    from stream.redis.migrate import migrate_keys

    settings = _settings(ctx)
    # The migration's own calls wait out the client's socket timeouts and retries (about 95 s by
    # default) on a Redis that accepts connections and never answers; this fails in the budget.
    asyncio.run(_redis_answers(settings, "a PING before the key migration"))
    report = migrate_keys(settings, batch=batch, dry_run=dry_run)
    verb = "would copy" if dry_run else "copied"
    click.echo(
        f"{verb} {report.copied} v1 keys to v2; {report.kept_v2} v1 keys deleted where a newer v2 key "
        f"existed; {report.vanished} expired meanwhile"
    )


async def _redis_answers(settings: Settings, what: str) -> None:
    """ServiceUnavailable naming why, unless Redis answers a PING within `lookup_redis_budget_ms`."""
    from stream.redis.client import redis_async
    from stream.serving.lookups import bounded_redis

    client = redis_async(settings)
    try:
        await bounded_redis(client.ping(), what, settings.lookup_redis_budget_ms)
    finally:
        await client.aclose()


def _checked_user_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The lookups' rules for a user id (length, not only invisible characters), as a usage error."""
    from stream.serving.search import check_user_id

    try:
        return check_user_id(value) or value
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@main.command()
@click.argument("user_id", callback=_checked_user_id)
@click.pass_context
@_friendly_errors
def recent(ctx: click.Context, user_id: str) -> None:
    """Show a user's recent activity as the stream recorded it in Redis."""
    from stream.serving.lookups import recent_activity

    for entry in asyncio.run(recent_activity(_settings(ctx), user_id)):
        click.echo(json.dumps(entry))


@main.command("export")
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="HF BERT checkpoint folder with tokenizer.json [default: the packaged all-MiniLM-L6-v2].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder [default: PROFILESTREAM_MODEL_DIR].",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice(["fp32", "fp32-opt", "fp16"]),
    help="Variant to export; repeat for several [default: all three].",
)
@click.option(
    "--attention",
    type=click.Choice(["classic", "eager", "sdpa"]),
    default="classic",
    show_default=True,
    help="Attention code traced into the graph; classic lets onnxruntime fuse it.",
)
@click.option("--max-length", type=int, default=None, help="Token limit [default: the checkpoint's].")
@click.option(
    "--sequence",
    is_flag=True,
    help="SOURCE is a sequence tower (`profilestream train` folder): export it to ONNX in --out "
    "(train already does this in its own folder).",
)
@click.pass_context
@_friendly_errors
def export_command(
    ctx: click.Context,
    source: Path | None,
    out_dir: Path | None,
    variants: tuple[str, ...],
    attention: str,
    max_length: int | None,
    sequence: bool,
) -> None:
    """Export a BERT checkpoint to ONNX (pooled, normalised output), parity-checked, with manifests."""
    if sequence:
        from export.sequence_export import export_sequence_tower

        if source is None:
            raise click.UsageError("--sequence needs --source: the `profilestream train` output folder")
        target = out_dir or _settings(ctx).sequence_model_dir
        manifest = export_sequence_tower(source, target)
        click.echo(
            f"{target / manifest.onnx_file}: {manifest.version}, parity {manifest.parity_max_abs_diff:.1e}"
        )
        return
    from export.onnx_export import Attention, default_source, export_model
    from models.encoder.manifest import VARIANTS

    result = export_model(
        source or default_source(),
        out_dir or _settings(ctx).model_dir,
        variants or VARIANTS,
        max_length=max_length,
        attention=cast(Attention, attention),
    )
    for m in result.manifests:
        click.echo(
            f"{m.variant}: {result.model_dir / m.variant / m.onnx_file} "
            f"min cosine {m.parity.min_cosine} ({m.parity.note})"
        )
    click.echo(f"default variant: {result.default_cpu} on CPU, {result.default_cuda} on CUDA")


@main.command("index")
@click.argument("catalog", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv", "parquet", "json", "amazon"]),
    default="auto",
    show_default=True,
    help="auto goes by suffix (.json = an array of items or amazon's items.json; .tsv and .tab are CSV).",
)
@click.option("--rebuild", is_flag=True, help="Ignore the existing index (needed after a new encoder).")
@click.option("--variant", default=None, help="Encoder variant [default: the model folder's default].")
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="Text encoding of a CSV/JSONL catalogue (e.g. cp1252; utf-8,cp1252 for a mix of both); a "
    "UTF-8 byte-order mark is read away.",
)
@click.option(
    "--delimiter",
    default="auto",
    show_default=True,
    metavar="auto|tab|CHAR",
    help="Column separator of a CSV catalogue: auto detects , ; tab or | from the first lines (.tsv and "
    ".tab files are tab-separated); or tab, or one character such as ';' or '|'. In a ';'-separated "
    "file a decimal comma in price, popularity or item_id (12,50) reads as a point. JSONL, Parquet and "
    "items.json ignore it.",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("index-rejects.jsonl"),
    show_default=True,
    help='Where skipped catalogue rows, and rows indexed without their unreadable price ("kept": '
    "true), are written with their line, field and reason (only when there are some).",
)
@click.pass_context
@_friendly_errors
def index_command(
    ctx: click.Context,
    catalog: Path,
    fmt: str,
    rebuild: bool,
    variant: str | None,
    encoding: str,
    delimiter: str,
    rejects_path: Path,
) -> None:
    """Build or update the item index from a catalogue: only new or changed items are encoded.

    An invalid row (no title, an id no event may carry) is skipped alone and written to --rejects;
    an unreadable price ("$5.99 - $12.99") leaves the item without a price, a warning written there
    too. The command fails only when no row could be indexed."""
    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from models.index.catalog import CatalogFormat, SkippedRow, write_skipped
    from models.index.item_index import sync_catalog
    from stream.cli.load import checked_delimiter, checked_encoding

    # The options are checked before the encoder loads: a typo costs no model start.
    encoding, separator = checked_encoding(encoding), checked_delimiter(delimiter)
    settings = _settings(ctx)
    encoder = load_encoder(settings.model_dir, options_from_settings(settings), variant)
    skipped: list[SkippedRow] = []
    try:
        stats = sync_catalog(
            settings.index_dir,
            catalog,
            encoder,
            fmt=cast(CatalogFormat, fmt),
            encoding=encoding,
            delimiter=separator,
            rebuild=rebuild,
            batch_size=settings.encoder_batch_size,
            skipped=skipped,
        )
    finally:
        # Written also when nothing could be indexed: the file says what to fix in each row.
        if skipped:
            write_skipped(skipped, rejects_path)
        dropped = [skip for skip in skipped if not skip.kept]
        warned = [skip for skip in skipped if skip.kept]
        for problems, what in (
            (dropped, "catalogue rows skipped"),
            (warned, "catalogue rows indexed without their unreadable price"),
        ):
            if problems:
                click.echo(f"{len(problems)} {what} (line, field, reason: {rejects_path})")
                for skip in problems[:3]:
                    click.echo(f"  {skip.where}: {skip.reason}")
    click.echo(
        f"index {settings.index_dir}: {stats.added} added, {stats.updated} updated, "
        f"{stats.unchanged} unchanged, {stats.removed} removed"
    )


class _IdArgumentCommand(click.Command):
    """`reco`'s parser: a word that starts with "-" but is none of the command's options is the
    user id ("-42", "-look", "-4k2"), where click would refuse "-42" (no option -4) and read
    "-4k2" as user "-4" with k=2. "-k 5", "-k5" and "--help" stay options; "--" ends them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: set[str] = set()
        flags: set[str] = set(ctx.help_option_names)
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                (flags if param.is_flag else takes_value).update(param.opts)
        options: list[str] = []
        words: list[str] = []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                words.extend(rest)
            elif arg in flags:
                options.append(arg)
            elif arg in takes_value:
                value = next(rest, None)
                if value is None:
                    return super().parse_args(ctx, args)  # click's "requires an argument"
                options.extend([arg, value])
            elif any(arg.startswith(name) and len(name) == 2 and arg[2:].isdigit() for name in takes_value):
                options.append(arg)  # "-k5"
            else:
                words.append(arg)
        return super().parse_args(ctx, [*options, "--", *words])


@main.command(cls=_IdArgumentCommand)
@click.argument("user_id", callback=_checked_user_id)
@click.option("-k", default=None, type=click.IntRange(1, 1000), help="How many items (default: top_k).")
@click.pass_context
@_friendly_errors
def reco(ctx: click.Context, user_id: str, k: int | None) -> None:
    """Show a user's recommendations with reasons (popular items for unknown users).

    USER_ID is read as events read it (Unicode NFC; an id no event can carry is
    refused). An id that starts with "-" works as it is (reco -42, reco -4k2); one that reads
    as an option (-k, -k7, --help) needs "--" before it (reco -- -k7).
    """
    from stream.serving.lookups import RecoClient

    async def fetch() -> dict[str, Any]:
        client = RecoClient.from_settings(_settings(ctx))
        try:
            return (await client.get(user_id, k)).to_dict()
        finally:
            await client.close()

    click.echo(json.dumps(asyncio.run(fetch()), indent=2, ensure_ascii=False))


@main.command("serve-lookups")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
@_friendly_errors
def serve_lookups(ctx: click.Context, host: str, port: int) -> None:
    """Serve GET /v1/users/{user_id}/recommendations for page renderers."""
    import uvicorn

    from stream.serving.api import create_lookup_app
    from stream.web.limits import uvicorn_options

    uvicorn.run(
        create_lookup_app(_settings(ctx)), host=host, port=port, log_level="warning", **uvicorn_options()
    )


@main.command("evaluate")
@click.argument("dataset_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--task",
    type=click.Choice(["recommend", "search", "online"]),
    default="recommend",
    show_default=True,
    help="recommend = full-ranking next-item HR/NDCG/MRR of baselines and encoders; search = "
    "query-only against personalised search, with a blend-weight sweep; online = the histories "
    "through a real worker and Redis (needs Kafka and Redis), scored from Redis and compared with "
    "the offline recomputation (exit code 1 if they differ).",
)
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N rows.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("var/eval"),
    show_default=True,
    help="Folder for the JSON and markdown report and the plot.",
)
@click.option("--variant", default=None, help="Encoder variant [default: the model folder's default].")
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="recommend: an exported fine-tuned model folder to evaluate beside the zero-shot one "
    "(PROFILESTREAM_MODEL_DIR); repeat for several.",
)
@click.option(
    "--item-model",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="recommend: the exported item tower of a `train --separate-towers` run; needs exactly one "
    "--model (its user tower).",
)
@click.option(
    "--item-index",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="recommend: a saved item index of DATASET_DIR/items.json by PROFILESTREAM_MODEL_DIR "
    "(`PROFILESTREAM_INDEX_DIR=DIR profilestream index DATASET_DIR/items.json`), used instead of "
    "encoding the catalogue again.",
)
@click.option(
    "--modes",
    default="text,items,hybrid,last item",
    show_default=True,
    help="recommend: the encoder modes to rank, comma-separated (text and hybrid encode every "
    "profile text: the slow ones).",
)
@click.option(
    "--mmr-sweep",
    is_flag=True,
    help="recommend: also re-rank each method's served ranking with MMR at several lambdas "
    "(accuracy against diversity; a table in the report and a plot).",
)
@click.option(
    "--mmr-plot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="recommend: where the MMR sweep's plot goes [default: OUT/rec_eval_mmr.png].",
)
@click.option(
    "--exclude-purchased",
    is_flag=True,
    help="recommend: rank as the stream serves, never recommending an item of the row's history "
    "(its purchases); a target among them is a miss. Default: nothing excluded (the published "
    "protocol).",
)
@click.option(
    "--no-zero-shot",
    is_flag=True,
    help="recommend: leave out the zero-shot encoder (saves encoding its catalogue and profiles).",
)
@click.option(
    "--hybrid-weight",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="recommend: share of the text vector in the hybrid user vector "
    "[default: PROFILESTREAM_HYBRID_TEXT_WEIGHT].",
)
@click.pass_context
@_friendly_errors
def evaluate_command(
    ctx: click.Context,
    dataset_dir: Path,
    task: str,
    split: str,
    limit: int | None,
    out_dir: Path,
    variant: str | None,
    models: tuple[Path, ...],
    item_model: Path | None,
    item_index: Path | None,
    modes: str,
    mmr_sweep: bool,
    mmr_plot: Path | None,
    exclude_purchased: bool,
    no_zero_shot: bool,
    hybrid_weight: float | None,
) -> None:
    """Offline evaluation on an amazon-office style DATASET_DIR (items.json, valid.csv, test.csv)."""
    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from stream.core.window import WindowConfig

    settings = _settings(ctx)
    if task == "online":
        from models.evaluation.online import run_online_eval
        from models.evaluation.online import write_report as write_online_report

        online = run_online_eval(
            settings, dataset_dir, out_dir / "online-work", os.environ, split=split, limit=limit
        )
        paths = write_online_report(online, out_dir)
        click.echo(online.to_markdown())
        click.echo("wrote " + ", ".join(str(path) for path in paths))
        if not online.equal:
            sys.exit(1)
        return
    if task == "recommend":
        from models.evaluation.mmr import MMR_LAMBDAS
        from models.evaluation.recommend import ENCODER_MODES, run_rec_eval, saved_catalogue
        from models.evaluation.recommend import write_report as write_rec_report

        chosen_modes = _encoder_modes(modes, ENCODER_MODES)
        if item_model is not None and len(models) != 1:
            raise click.UsageError("--item-model needs exactly one --model: the user tower it pairs with")
        # The served model (PROFILESTREAM_MODEL_DIR) is only needed as the zero-shot encoder.
        encoders: list[tuple[str, Any]] = (
            []
            if no_zero_shot
            else [("zero-shot", load_encoder(settings.model_dir, options_from_settings(settings), variant))]
        )
        item_encoders: dict[str, Any] = {}
        towers: list[tuple[str, Any, Any]] = []
        from models.encoder.sequence_tower import SEQUENCE_MANIFEST, SequenceTower

        for model_dir in models:
            if (model_dir / SEQUENCE_MANIFEST).is_file():
                # A sequence tower reads the zero-shot encoder's item vectors (the index's).
                zero_shot = encoders[0][1] if encoders and encoders[0][0] == "zero-shot" else None
                zero_shot = zero_shot or load_encoder(
                    settings.model_dir, options_from_settings(settings), variant
                )
                tower = SequenceTower(
                    model_dir,
                    provider=settings.encoder_provider,
                    intra_op_threads=settings.encoder_intra_op_threads,
                )
                towers.append((f"tower {model_dir.name}", tower, zero_shot))
                continue
            label = "fine-tuned" if len(models) == 1 else f"fine-tuned {model_dir.name}"
            if item_model is not None:
                label = "fine-tuned, separate towers"
                item_encoders[label] = load_encoder(item_model, options_from_settings(settings), variant)
            encoders.append((label, load_encoder(model_dir, options_from_settings(settings), variant)))
        catalogues: dict[str, Any] = {}
        if item_index is not None:
            # Vectors of the zero-shot encoder (the index's), whichever method reads them.
            version = load_encoder(settings.model_dir, options_from_settings(settings), variant).model_version
            catalogues[version] = saved_catalogue(dataset_dir, item_index, version)
        rec_report = run_rec_eval(
            dataset_dir,
            encoders,
            window=WindowConfig.from_settings(settings),
            split=split,
            limit=limit,
            hybrid_weight=settings.hybrid_text_weight if hybrid_weight is None else hybrid_weight,
            # As the worker's ProfileConfig: the encoder truncates to its token limit.
            max_profile_chars=settings.encoder_max_length * 8,
            batch_size=settings.encoder_batch_size,
            popularity_weight=settings.popularity_weight,
            item_encoders=item_encoders,
            towers=towers,
            catalogues=catalogues,
            mmr_lambdas=MMR_LAMBDAS if mmr_sweep else (),
            modes=chosen_modes,
            exclude_purchased=exclude_purchased,
        )
        paths = write_rec_report(rec_report, out_dir, mmr_plot)
        click.echo(rec_report.to_markdown())
    else:
        from models.evaluation.search import run_search_eval, write_report
        from stream.serving.search import SearchConfig

        report = run_search_eval(
            dataset_dir,
            load_encoder(settings.model_dir, options_from_settings(settings), variant),
            window=WindowConfig.from_settings(settings),
            search=SearchConfig.from_settings(settings),
            split=split,
            limit=limit,
            batch_size=settings.encoder_batch_size,
        )
        paths = write_report(report, out_dir)
        click.echo(report.to_markdown())
    click.echo("wrote " + ", ".join(str(path) for path in paths))


def _encoder_modes(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """`--modes`: comma-separated names out of `known`."""
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    if not chosen or not set(chosen) <= set(known):
        raise click.UsageError(f"--modes: choose from {', '.join(known)} (comma-separated)")
    return chosen


@main.command("train")
@click.argument("dataset_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the result: the sequence tower, checkpoint and exported ONNX (recipe sequence), "
    "or the fine-tuned BERT checkpoint (recipe bert; then: profilestream export --source OUT).",
)
@click.option(
    "--recipe",
    type=click.Choice(["sequence", "bert"]),
    default="sequence",
    show_default=True,
    help="sequence: the sequence user tower over the zero-shot item vectors (minutes on a CPU; "
    "serve with PROFILESTREAM_USER_VECTOR=sequence PROFILESTREAM_SEQUENCE_MODEL_DIR=OUT); bert: "
    "fine-tune the shared BERT two-tower encoder (the options below up to --separate-towers).",
)
# Defaults as in export.sequence_module.SequenceConfig (not imported here: it brings torch).
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="recipe sequence.")
@click.option("--layers", type=click.IntRange(min=0), default=1, show_default=True, help="recipe sequence.")
@click.option("--hidden", type=click.IntRange(min=8), default=256, show_default=True, help="recipe sequence.")
@click.option(
    "--tower-lr", type=click.FloatRange(min=0.0), default=1e-3, show_default=True, help="recipe sequence."
)
@click.option(
    "--tower-batch-size", type=click.IntRange(min=2), default=256, show_default=True, help="recipe sequence."
)
@click.option(
    "--item-residuals/--no-item-residuals",
    default=True,
    show_default=True,
    help="recipe sequence: learn a residual vector per item seen in training (new items keep their "
    "text vector).",
)
@click.option(
    "--max-neighbours",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="recipe sequence: item co-occurrence (item-kNN) neighbours kept per item, from the training "
    "pairs, exported with the tower and added to its ranking; 0: none.",
)
@click.option(
    "--knn-weight",
    type=click.FloatRange(min=0.0),
    default=0.15,
    show_default=True,
    help="recipe sequence: weight of the co-occurrence term in the served score (chosen on the valid "
    "rows, models/README.md; 0.3 was best there for --knn-lists sequential); 0: the tower's score "
    "alone.",
)
@click.option(
    "--knn-lists",
    type=click.Choice(["sequential", "cooccurrence"]),
    default="cooccurrence",
    show_default=True,
    help="recipe sequence: how the co-occurrence lists are built: cooccurrence (the item-kNN "
    "baseline's: same user, any order) or sequential (the items that follow each item in a user's "
    "sequence, nearer ones weighted more; better on the valid rows with --knn-weight 0.3, not on "
    "test: models/README.md).",
)
@click.option(
    "--session-weight",
    type=click.FloatRange(min=0.0),
    default=0.15,
    show_default=True,
    help="recipe sequence: weight of the session term (what the 200 most similar training users "
    "bought after the items they share with the window, V-SKNN; chosen on the valid rows, "
    "models/README.md round 7) in the served score; the training sequences are exported with the "
    "tower, without user ids; 0: none.",
)
@click.option(
    "--item-index",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="recipe sequence: a saved item index of DATASET_DIR/items.json by PROFILESTREAM_MODEL_DIR "
    "(`profilestream index`), used instead of encoding the catalogue again.",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="HF BERT checkpoint folder to start from [default: the packaged all-MiniLM-L6-v2].",
)
# Defaults as in models.training.train.TrainConfig (not imported here: it brings torch).
@click.option("--steps", type=click.IntRange(min=1), default=900, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0.0), default=2e-4, show_default=True)
@click.option("--warmup-ratio", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=1e-4), default=0.05, show_default=True)
@click.option("--user-max-length", type=click.IntRange(8, 512), default=64, show_default=True)
@click.option("--item-max-length", type=click.IntRange(8, 512), default=64, show_default=True)
@click.option("--hard-negatives", is_flag=True, help="Add one item of the target's brand per example.")
@click.option(
    "--separate-towers",
    is_flag=True,
    help="Train a user and an item BERT (item tower in OUT/item-tower) instead of one shared; for "
    "measurement: evaluate with --model OUT-export --item-model ITEM-export. The stream serves one.",
)
@click.option("--seed", type=int, default=13, show_default=True)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Steps between checkpoints in OUT/checkpoint (0: only the final one).",
)
@click.option(
    "--split",
    "eval_split",
    type=click.Choice(["test", "valid"]),
    default="test",
    show_default=True,
    help="The split to be evaluated later: its targets are kept out of training.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.pass_context
@_friendly_errors
def train_command(
    ctx: click.Context,
    dataset_dir: Path,
    out_dir: Path,
    recipe: str,
    epochs: int,
    layers: int,
    hidden: int,
    tower_lr: float,
    tower_batch_size: int,
    item_residuals: bool,
    max_neighbours: int,
    knn_weight: float,
    knn_lists: str,
    session_weight: float,
    item_index: Path | None,
    source: Path | None,
    steps: int,
    batch_size: int,
    learning_rate: float,
    warmup_ratio: float,
    temperature: float,
    user_max_length: int,
    item_max_length: int,
    hard_negatives: bool,
    separate_towers: bool,
    seed: int,
    checkpoint_every: int,
    eval_split: str,
    device: str,
    threads: int | None,
) -> None:
    """Train on DATASET_DIR's allowed next-item pairs (InfoNCE): the sequence user tower (default)
    or the shared BERT two-tower encoder (--recipe bert)."""
    if recipe == "sequence":
        _train_sequence(
            ctx,
            dataset_dir,
            out_dir,
            epochs=epochs,
            layers=layers,
            hidden=hidden,
            learning_rate=tower_lr,
            batch_size=tower_batch_size,
            temperature=temperature,
            eval_split=eval_split,
            seed=seed,
            threads=threads,
            item_residuals=item_residuals,
            item_index=item_index,
            max_neighbours=max_neighbours,
            knn_weight=knn_weight,
            knn_lists=knn_lists,
            session_weight=session_weight,
        )
        return
    from export.onnx_export import default_source
    from models.data.amazon import load_dataset
    from models.training.train import TrainConfig, train
    from stream.core.window import WindowConfig

    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        temperature=temperature,
        user_max_length=user_max_length,
        item_max_length=item_max_length,
        hard_negatives=hard_negatives,
        separate_towers=separate_towers,
        seed=seed,
        checkpoint_every=checkpoint_every,
        eval_split=eval_split,
        device=device,
        threads=threads,
    )
    result = train(
        load_dataset(dataset_dir),
        source or default_source(),
        out_dir,
        config,
        WindowConfig.from_settings(_settings(ctx)),
    )
    first, last = result.first_last_loss()
    click.echo(
        f"trained {result.steps} steps on {result.examples} examples in {result.seconds:.0f} s "
        f"({result.device}, {result.threads} threads): loss {first:.3f} -> {last:.3f}"
    )
    click.echo(f"next: profilestream export --source {out_dir} --out MODEL_DIR --variant fp32")


def _train_sequence(
    ctx: click.Context,
    dataset_dir: Path,
    out_dir: Path,
    *,
    epochs: int,
    layers: int,
    hidden: int,
    learning_rate: float,
    batch_size: int,
    temperature: float,
    eval_split: str,
    seed: int,
    threads: int | None,
    item_residuals: bool,
    item_index: Path | None,
    max_neighbours: int,
    knn_weight: float,
    knn_lists: str,
    session_weight: float,
) -> None:
    from export.sequence_module import SequenceConfig
    from models.data.amazon import load_dataset
    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from models.index.item_index import load_index
    from models.training.sequence import train_sequence_tower
    from stream.core.window import WindowConfig

    settings = _settings(ctx)
    config = SequenceConfig(
        hidden=hidden,
        layers=layers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        temperature=temperature,
        popularity_weight=settings.popularity_weight,
        eval_split=eval_split,
        seed=seed,
        threads=threads,
        item_residuals=item_residuals,
        max_neighbours=max_neighbours,
        knn_weight=knn_weight,
        knn_lists=knn_lists,
        session_weight=session_weight,
    )
    encoder = load_encoder(settings.model_dir, options_from_settings(settings))
    result = train_sequence_tower(
        load_dataset(dataset_dir),
        encoder,
        out_dir,
        config,
        WindowConfig.from_settings(settings),
        batch_size=settings.encoder_batch_size,
        item_index=None if item_index is None else load_index(item_index, encoder.model_version),
    )
    first, last = result.train.first_last_loss()
    click.echo(
        f"item vectors in {result.encode_seconds:.0f} s; trained {result.train.steps} steps on "
        f"{result.train.examples} examples in {result.train.seconds:.0f} s ({result.train.threads} threads): "
        f"loss {first:.3f} -> {last:.3f}; exported {result.manifest.version} (parity max |diff| "
        f"{result.manifest.parity_max_abs_diff:.1e}); co-occurrence lists for "
        f"{result.manifest.neighbour_items} items, kNN weight {result.manifest.knn_weight:g}; "
        f"{result.manifest.sessions} sessions, session weight {result.manifest.session_weight:g}"
    )
    click.echo(
        f"serve: PROFILESTREAM_USER_VECTOR=sequence PROFILESTREAM_SEQUENCE_MODEL_DIR={out_dir}; "
        f"measure: profilestream evaluate {dataset_dir} --model {out_dir}"
    )


@main.command("sample-catalogue")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--items", default=500, show_default=True, help="Items in the catalogue.")
@click.option("--seed", default=7, show_default=True)
def sample_catalogue_command(path: str, items: int, seed: int) -> None:
    """Write the synthetic sample catalogue (JSONL) whose ids the sample events use."""
    from stream.core.sample import sample_catalogue

    with open(path, "w", encoding="utf-8") as out:
        for row in sample_catalogue(items=items, seed=seed):
            out.write(json.dumps(row) + "\n")
    click.echo(f"wrote {items} items to {path}")


@main.command()
@click.option("--once", is_flag=True, help="Stop by itself after showing the results.")
@click.option("--users", default=20, show_default=True, help="Users in the sample stream.")
@click.option("--events", default=400, show_default=True, help="Events in the sample stream.")
@click.option("--timeout-s", default=300.0, show_default=True, help="Give up waiting after this.")
@click.option("--collector-port", default=8088, show_default=True, type=click.IntRange(1, 65535))
@click.option("--lookup-port", default=8081, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
@_friendly_errors
def demo(
    ctx: click.Context,
    once: bool,
    users: int,
    events: int,
    timeout_s: float,
    collector_port: int,
    lookup_port: int,
) -> None:
    """Export, index, start worker + collector + lookups, replay a sample, show recommendations."""
    from stream.cli.demo import DemoPorts, run_demo

    run_demo(
        _settings(ctx),
        once=once,
        users=users,
        events=events,
        timeout_s=timeout_s,
        ports=DemoPorts(collector=collector_port, lookups=lookup_port),
    )


def _register_subcommands() -> None:
    # These modules import only click and stream at module level; their heavy imports are lazy.
    from stream.cli.collector import collector_command
    from stream.cli.load import load_command
    from stream.cli.replay import replay_command

    for command in (collector_command, replay_command, load_command):
        main.add_command(command)


_register_subcommands()
