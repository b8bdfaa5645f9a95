from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.requirements import require_module

torch = require_module("torch")
require_module("transformers")

from export.onnx_export import export_model, inspect_source  # noqa: E402
from models.data.amazon import load_dataset  # noqa: E402
from models.encoder.onnx_encoder import EncoderOptions, load_encoder  # noqa: E402
from models.training.train import ITEM_TOWER_DIR, TRAINING_FILE, TrainConfig, info_nce, train  # noqa: E402
from stream.core.errors import ConfigError  # noqa: E402
from stream.core.window import WindowConfig  # noqa: E402
from tests.support.rec_fixtures import write_dataset  # noqa: E402
from tests.support.tiny_model import write_tiny_checkpoint  # noqa: E402


def test_info_nce_masks_duplicates_of_the_positive() -> None:
    users = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    # Row 0's positive (column 0) and column 1 hold the same item: column 1 is no negative for row 0.
    items = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0]]), dim=1)
    positives = torch.tensor([0, 1])
    same = torch.tensor([[True, True], [True, True]])
    masked = info_nce(users, items, positives, same, temperature=0.1)
    unmasked = info_nce(users, items, positives, torch.eye(2, dtype=torch.bool), temperature=0.1)
    assert float(masked) < float(unmasked)
    # With all duplicates masked, each row has only its positive left: zero loss.
    assert float(masked) == pytest.approx(0.0, abs=1e-6)


def _config(**overrides: object) -> TrainConfig:
    base = {
        "steps": 150,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "warmup_ratio": 0.1,
        "user_max_length": 32,
        "item_max_length": 16,
        "checkpoint_every": 50,
        "device": "cpu",
        "threads": 1,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_a_tiny_training_run_lowers_the_loss_and_exports(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    source = write_tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "trained"
    result = train(dataset, source, out, _config(), WindowConfig())
    first, last = result.first_last_loss(span=15)
    assert result.steps == 150 and len(result.losses) == 150
    assert last < first * 0.85, (first, last)
    assert result.device == "cpu" and result.threads == 1
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", TRAINING_FILE):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint").exists()  # intermediate checkpoints go once the final one is there
    assert inspect_source(out).max_length == 32  # the training limit travels into the export
    record = json.loads((out / TRAINING_FILE).read_text())
    assert record["step"] == 150 and record["config"]["seed"] == 13
    # The checkpoint is a model version the stream can load: export (parity-checked), then encode.
    exported = export_model(out, tmp_path / "model", ["fp32"])
    assert exported.manifests[0].parity.min_cosine is not None
    assert exported.manifests[0].parity.min_cosine >= 0.999
    encoder = load_encoder(tmp_path / "model", EncoderOptions(provider="cpu", intra_op_threads=1))
    assert encoder.encode(["black pen", "office desk"]).shape == (2, 32)


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    source = write_tiny_checkpoint(tmp_path / "tiny")
    config = _config(steps=3, checkpoint_every=0, hard_negatives=True)
    first = train(dataset, source, tmp_path / "a", config, WindowConfig())
    second = train(dataset, source, tmp_path / "b", config, WindowConfig())
    assert first.losses == second.losses


def test_in_batch_negatives_need_a_batch(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    with pytest.raises(ConfigError, match="batch-size"):
        train(dataset, tmp_path, tmp_path / "out", _config(batch_size=1), WindowConfig())


def test_train_export_evaluate_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stream.cli import main

    data = write_dataset(tmp_path / "data")
    source = write_tiny_checkpoint(tmp_path / "tiny")
    runner = CliRunner()
    env = {"PROFILESTREAM_ENCODER_PROVIDER": "cpu", "PROFILESTREAM_ENCODER_INTRA_OP_THREADS": "1"}
    args = ["train", str(data), "--recipe", "bert", "--out", str(tmp_path / "ckpt"), "--source", str(source)]
    args += ["--steps", "4"]
    args += ["--batch-size", "4", "--device", "cpu", "--threads", "1", "--user-max-length", "24"]
    trained = runner.invoke(
        main,
        args,
        env=env,
    )
    assert trained.exit_code == 0, trained.output
    assert "trained 4 steps" in trained.output
    for name, ckpt in (("zero", source), ("tuned", tmp_path / "ckpt")):
        exported = runner.invoke(
            main,
            ["export", "--source", str(ckpt), "--out", str(tmp_path / name), "--variant", "fp32"],
            env=env,
        )
        assert exported.exit_code == 0, exported.output
    out = tmp_path / "eval"
    evaluated = runner.invoke(
        main,
        ["evaluate", str(data), "--model", str(tmp_path / "tuned"), "--out", str(out)],
        env={**env, "PROFILESTREAM_MODEL_DIR": str(tmp_path / "zero")},
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "| fine-tuned: text |" in evaluated.output and "| zero-shot: last item |" in evaluated.output
    assert {p.name for p in out.iterdir()} == {"rec_eval.json", "rec_eval.md", "rec_eval.png"}


def test_separate_towers_train_two_models_that_the_cli_evaluates_as_a_pair(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stream.cli import main

    dataset = load_dataset(write_dataset(tmp_path / "data"))
    source = write_tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "towers"
    result = train(dataset, source, out, _config(steps=60, separate_towers=True), WindowConfig())
    first, last = result.first_last_loss(span=10)
    assert last < first, (first, last)
    user_weights = (out / "model.safetensors").read_bytes()
    item_weights = (out / ITEM_TOWER_DIR / "model.safetensors").read_bytes()
    assert user_weights != item_weights  # each tower got its own updates
    assert json.loads((out / ITEM_TOWER_DIR / TRAINING_FILE).read_text())["config"]["separate_towers"]
    runner = CliRunner()
    env = {"PROFILESTREAM_ENCODER_PROVIDER": "cpu", "PROFILESTREAM_ENCODER_INTRA_OP_THREADS": "1"}
    for name, ckpt in (("user", out), ("item", out / ITEM_TOWER_DIR)):
        exported = runner.invoke(
            main,
            ["export", "--source", str(ckpt), "--out", str(tmp_path / name), "--variant", "fp32"],
            env=env,
        )
        assert exported.exit_code == 0, exported.output
    args = ["evaluate", str(tmp_path / "data"), "--no-zero-shot", "--out", str(tmp_path / "eval")]
    evaluated = runner.invoke(
        main, [*args, "--model", str(tmp_path / "user"), "--item-model", str(tmp_path / "item")], env=env
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "| fine-tuned, separate towers: text |" in evaluated.output
    refused = runner.invoke(main, [*args, "--item-model", str(tmp_path / "item")], env=env)
    assert refused.exit_code == 2 and "--item-model needs exactly one --model" in refused.output


def test_the_cli_defaults_are_the_training_configs() -> None:
    from stream.cli import main

    command = main.commands["train"]
    defaults = {p.name: p.default for p in command.params}
    config = TrainConfig()
    assert defaults["steps"] == config.steps
    assert defaults["learning_rate"] == config.learning_rate
    assert defaults["batch_size"] == config.batch_size
    from export.sequence_module import SequenceConfig

    tower = SequenceConfig()
    assert defaults["recipe"] == "sequence"
    assert (defaults["epochs"], defaults["layers"], defaults["hidden"]) == (
        tower.epochs,
        tower.layers,
        tower.hidden,
    )
    assert (defaults["tower_lr"], defaults["tower_batch_size"]) == (tower.learning_rate, tower.batch_size)
    assert defaults["temperature"] == tower.temperature
    assert defaults["item_residuals"] == tower.item_residuals


def test_the_gpu_training_script_uses_only_options_the_cli_has() -> None:
    import re
    import subprocess

    from stream.cli import main

    script = REPO / "models" / "train_gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    calls = re.findall(r"-m stream\.cli (\w+) (.*?)(?:2>&1|$)", script.read_text().replace("\\\n", " "), re.M)
    assert [command for command, _ in calls] == ["train", "export", "train", "evaluate"]
    for command, arguments in calls:
        known = {opt for param in main.commands[command].params for opt in param.opts}
        used = set(re.findall(r"(--[a-z-]+)", arguments))
        assert used and used <= known, (command, used - known)
