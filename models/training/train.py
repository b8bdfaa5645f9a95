"""`profilestream train`: contrastive fine-tuning of the shared BERT tower on next-item pairs.

Examples come from `models.data.amazon` (valid rows and next-item pairs inside the allowed
histories, never a target of the evaluated split). The user tower's input is the stream's own
profile text (`stream.core.profile_text.build_profile_text` over the window the stream would hold after
the history, `models.evaluation.search.history_window`); the item tower's input is the index's item text
(`models.index.catalog.item_text`). Both towers are one BERT with the exported module's pooling
(`export.wrapper.SentenceEmbedder`: mean over the mask, L2-normalised), so what is trained is
exactly what `profilestream export` turns into ONNX, and the stream needs one encoder only.
`separate_towers` trains two copies instead (the item tower saved in ``item-tower/``), for the
README's comparison, which kept shared weights.

Loss: InfoNCE over in-batch negatives (each user's target against the batch's other targets;
duplicates of the own target are masked, they are not negatives), optionally one hard negative per
example (another item of the target's brand). AdamW, linear warm-up then linear decay, fixed
seeds, bf16 autocast on CUDA only (CPU trains in fp32).

The output folder is a Hugging Face checkpoint (config, weights, tokenizer files) with a
``sentence_bert_config.json`` whose ``max_seq_length`` is the training token limit, so the export
carries that limit into the model manifest and the stream truncates as training did.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs installed

from export.onnx_export import TOKENIZER_FILES, SourceModel, inspect_source, load_embedder, padded_tensors
from export.wrapper import SentenceEmbedder
from models.data.amazon import Dataset, TrainPair, allowed_sequences, history_window, training_pairs
from models.index.catalog import CatalogItem, item_text
from stream.core.errors import ConfigError, ModelError, SourceError
from stream.core.profile_text import build_profile_text
from stream.core.window import WindowConfig

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
ITEM_TOWER_DIR = "item-tower"  # inside the output folder, with --separate-towers only


@dataclass(frozen=True, slots=True)
class TrainConfig:
    # The best measured CPU recipe (run D in the README): about 2 epochs of the amazon-office
    # pairs, 36 minutes on the 2-core machine.
    steps: int = 900
    batch_size: int = 32
    # Short CPU runs (under a few epochs) need a brisker rate than the usual 2e-5.
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Sharp enough to separate in-batch candidates on unit vectors (sentence-transformers' 20x scale).
    temperature: float = 0.05
    # Modest limits keep a CPU run short; the most recent, heaviest profile parts come first, so
    # truncation drops the least important ones (and the exported model truncates the same way).
    user_max_length: int = 64
    item_max_length: int = 64
    hard_negatives: bool = False
    # Two BERTs (user tower, item tower) instead of one shared: the README's measurement; the
    # stream serves one encoder, so the default stays shared.
    separate_towers: bool = False
    seed: int = 13
    checkpoint_every: int = 100  # steps; 0 = only the final checkpoint
    eval_split: str = "test"  # the split training must not see the targets of
    device: str = "auto"  # auto, cpu or cuda
    threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)


@dataclass(frozen=True, slots=True)
class TrainResult:
    out_dir: Path
    steps: int
    examples: int
    device: str
    threads: int
    seconds: float
    losses: tuple[float, ...] = field(default=())

    def first_last_loss(self, span: int = 20) -> tuple[float, float]:
        """Mean loss of the first and of the last `span` steps."""
        head, tail = self.losses[:span], self.losses[-span:]
        return float(np.mean(head)) if head else math.nan, float(np.mean(tail)) if tail else math.nan


@dataclass(frozen=True, slots=True)
class Examples:
    """Tokenised training examples: user texts, and each example's target as an item index."""

    user_tokens: list[list[int]]
    targets: list[int]  # index into item_tokens
    item_ids: list[str]
    item_tokens: list[list[int]]
    hard_negative_pool: list[list[int]]  # per item index: other items of the same brand


def build_examples(
    pairs: Sequence[TrainPair],
    items: dict[str, CatalogItem],
    tokenizer: Tokenizer,
    window: WindowConfig,
    config: TrainConfig,
) -> Examples:
    """Profile texts (the stream's builder) and item texts (the index's template), tokenised."""
    titles = {item_id: item.title for item_id, item in items.items()}
    usable = [pair for pair in pairs if pair.target in items and pair.history]
    if not usable:
        raise SourceError("no training pair has a history and a target in items.json; check the data folder")
    user_texts = [
        build_profile_text(history_window(pair.history, window), window, titles.get) for pair in usable
    ]
    item_ids = sorted({pair.target for pair in usable} | set(items), key=list(items).index)
    positions = {item_id: n for n, item_id in enumerate(item_ids)}
    user_tokens = _tokenise(tokenizer, user_texts, config.user_max_length)
    item_tokens = _tokenise(tokenizer, [item_text(items[i]) for i in item_ids], config.item_max_length)
    by_brand: dict[str, list[int]] = {}
    for n, item_id in enumerate(item_ids):
        brand = items[item_id].brand.strip().lower()
        if brand:
            by_brand.setdefault(brand, []).append(n)
    pool = [
        [m for m in by_brand.get(items[item_id].brand.strip().lower(), []) if m != n]
        for n, item_id in enumerate(item_ids)
    ]
    return Examples(user_tokens, [positions[p.target] for p in usable], item_ids, item_tokens, pool)


def _tokenise(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return [list(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def info_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    positives: torch.Tensor,
    same_item: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cross-entropy of each user's positive column against all item columns.

    `positives[i]` is row i's positive column; `same_item[i, j]` marks columns holding the same item
    as row i's positive (duplicates in the batch), which are masked out except the positive itself.
    """
    logits = users @ items.T / temperature
    rows = torch.arange(len(users), device=users.device)
    mask = same_item.clone()
    mask[rows, positives] = False
    logits = logits.masked_fill(mask, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, positives)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # libraries that draw from the global generator
    torch.manual_seed(seed)


def _device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no CUDA device; use --device auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    dataset: Dataset,
    source: Path,
    out_dir: Path,
    config: TrainConfig,
    window: WindowConfig,
) -> TrainResult:
    """Fine-tune the checkpoint at `source` on `dataset`'s allowed pairs; write it to `out_dir`."""
    if config.steps < 1 or config.batch_size < 2:
        raise ConfigError("train needs --steps >= 1 and --batch-size >= 2 (in-batch negatives)")
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    model_info = inspect_source(source)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    pairs = training_pairs(allowed_sequences(dataset, config.eval_split))
    examples = build_examples(pairs, dataset.items, tokenizer, window, config)
    log.info(
        "training on %d examples (%d items) from %s, %d steps of %d, device %s, %d threads",
        len(examples.targets),
        len(examples.item_ids),
        dataset.name,
        config.steps,
        config.batch_size,
        device,
        torch.get_num_threads(),
    )
    # sdpa: transformers' fused attention, with dropout, for training; the export re-traces the
    # saved weights with its own attention code, and its parity check proves they agree.
    embedder, item_embedder = _towers(model_info, config, device)
    parameters = list(embedder.parameters())
    if item_embedder is not embedder:
        parameters += list(item_embedder.parameters())
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, int(config.warmup_ratio * config.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: _schedule(step, config.steps, warmup)
    )
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(examples.targets))
    cursor = 0
    losses: list[float] = []
    started = time.perf_counter()
    autocast = device.type == "cuda"
    with tqdm(total=config.steps, desc="training", unit="step") as bar:
        for step in range(config.steps):
            if cursor + config.batch_size > len(order):
                order, cursor = rng.permutation(len(examples.targets)), 0
            batch = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = _batch_loss(
                    (embedder, item_embedder),
                    examples,
                    batch=batch,
                    pad_id=model_info.pad_id,
                    config=config,
                    rng=rng,
                    device=device,
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if (
                config.checkpoint_every
                and (step + 1) % config.checkpoint_every == 0
                and step + 1 < config.steps
            ):
                _save_towers(
                    (embedder, item_embedder),
                    source,
                    out_dir / "checkpoint",
                    config=config,
                    losses=losses,
                    step=step + 1,
                )
    seconds = time.perf_counter() - started
    _save_towers(
        (embedder, item_embedder),
        source,
        out_dir,
        config=config,
        losses=losses,
        step=config.steps,
        seconds=seconds,
    )
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    result = TrainResult(
        out_dir,
        config.steps,
        len(examples.targets),
        str(device),
        torch.get_num_threads(),
        seconds,
        tuple(losses),
    )
    first, last = result.first_last_loss()
    log.info(
        "trained %d steps in %.0f s: loss %.3f -> %.3f; checkpoint %s",
        config.steps,
        seconds,
        first,
        last,
        out_dir,
    )
    return result


def _towers(
    model_info: SourceModel, config: TrainConfig, device: torch.device
) -> tuple[SentenceEmbedder, SentenceEmbedder]:
    """(user tower, item tower): the same module when shared, two copies of the start otherwise."""
    user_tower = load_embedder(model_info, "sdpa").to(device)
    item_tower = load_embedder(model_info, "sdpa").to(device) if config.separate_towers else user_tower
    user_tower.train()
    item_tower.train()
    return user_tower, item_tower


def _batch_loss(
    towers: tuple[SentenceEmbedder, SentenceEmbedder],
    examples: Examples,
    *,
    batch: np.ndarray[Any, np.dtype[np.intp]],
    pad_id: int,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> torch.Tensor:
    targets = [examples.targets[int(n)] for n in batch]
    columns = list(targets)
    if config.hard_negatives:
        for target in targets:
            pool = examples.hard_negative_pool[target]
            if pool:
                columns.append(pool[int(rng.integers(len(pool)))])
    user_ids, user_mask = padded_tensors([examples.user_tokens[int(n)] for n in batch], pad_id)
    item_ids, item_mask = padded_tensors([examples.item_tokens[c] for c in columns], pad_id)
    user_tower, item_tower = towers
    users = user_tower(user_ids.to(device), user_mask.to(device)).float()
    items = item_tower(item_ids.to(device), item_mask.to(device)).float()
    column_items = torch.tensor(columns, device=device)
    target_items = torch.tensor(targets, device=device)
    same_item = target_items[:, None] == column_items[None, :]
    positives = torch.arange(len(targets), device=device)
    return info_nce(users, items, positives, same_item, config.temperature)


def _save_towers(
    towers: tuple[SentenceEmbedder, SentenceEmbedder],
    source: Path,
    out_dir: Path,
    *,
    config: TrainConfig,
    losses: Sequence[float],
    step: int,
    seconds: float | None = None,
) -> None:
    """The user tower (the only one when shared) in `out_dir`, a separate item tower inside it."""
    user_tower, item_tower = towers
    places = [(user_tower, out_dir)]
    if item_tower is not user_tower:
        places.append((item_tower, out_dir / ITEM_TOWER_DIR))
    for tower, tower_dir in places:
        _save(tower, source, tower_dir, config=config, losses=losses, step=step, seconds=seconds)


def _save(
    embedder: SentenceEmbedder,
    source: Path,
    out_dir: Path,
    *,
    config: TrainConfig,
    losses: Sequence[float],
    step: int,
    seconds: float | None = None,
) -> None:
    """A checkpoint `profilestream export --source` reads: weights, config, tokenizer, limits."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        embedder.bert.save_pretrained(str(out_dir))
    except OSError as exc:
        raise ModelError(
            f"cannot write the checkpoint to {out_dir} ({exc}); check the path and free space"
        ) from exc
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out_dir / name)
    limit = max(config.user_max_length, config.item_max_length)
    (out_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": limit, "do_lower_case": False}) + "\n", encoding="utf-8"
    )
    record = {
        "source": str(source),
        "step": step,
        "config": asdict(config),
        "seconds": None if seconds is None else round(seconds, 1),
        "loss_first_20": float(np.mean(losses[:20])) if losses else None,
        "loss_last_20": float(np.mean(losses[-20:])) if losses else None,
        "losses": [round(v, 5) for v in losses],
    }
    (out_dir / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
