"""finetune-studio-cli: the exact command-line contract."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_studio.cli import main

TESTS = Path(__file__).parents[1]
# Runs here train on the CPU whatever the machine has: the same numbers everywhere, and a
# resumed run can equal an uninterrupted one exactly (CUDA kernels need not be bitwise
# reproducible).
CPU = ("--device", "cpu")


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def train_tiny(data: Path, out: Path, *extra: str) -> int:
    return cli(
        "train",
        data,
        "--out",
        out,
        "--backbone",
        "tiny_cnn",
        "--epochs",
        "5",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--workers",
        "0",
        "--head-fit",
        "epochs",
        *CPU,
        *extra,
    )


def test_inspect_json_lists_classes_counts_and_skipped_files(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (colour_dataset / "red" / "broken.png").write_bytes(b"")

    assert cli("inspect", colour_dataset, "--json") == 0

    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["classes"]] == ["blue", "green", "red"]
    assert sum(c["train"] + c["val"] for c in report["classes"]) == 36
    assert report["skipped"] == [
        {"path": str(colour_dataset / "red" / "broken.png"), "reason": "empty file"}
    ]


def test_backbones_json_is_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("backbones", "--json") == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["efficientnet_lite0"]["weights"] == "bundled"
    assert rows["convnext_tiny"]["input_size"] == 224


def test_train_writes_a_model_folder_and_per_epoch_metrics(
    colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    assert train_tiny(colour_dataset, out) == 0

    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
    }
    assert "epoch 5/5" in capsys.readouterr().err

    assert cli("predict", out, colour_dataset / "red", "--json", "--top-k", "2") == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 12 and all(len(p["top"]) == 2 for p in predictions)
    assert sum(p["top"][0]["class"] == "red" for p in predictions) >= 10

    assert cli("export", out, "--format", "onnx") == 0
    assert (out / "model.onnx").stat().st_size > 0


def test_training_from_a_recipe_file_with_overrides(colour_dataset: Path, tmp_path: Path) -> None:
    from finetune_studio.engine.recipe import Recipe

    recipe = Recipe(
        dataset=str(colour_dataset), backbone="tiny_cnn", epochs=5, workers=0, device="cpu"
    )
    recipe.save(tmp_path / "recipe.json")

    assert (
        cli("train", "--recipe", tmp_path / "recipe.json", "--epochs", "1", "--out", tmp_path / "m")
        == 0
    )
    saved = json.loads((tmp_path / "m" / "model.json").read_text())["recipe"]
    assert saved["epochs"] == 1 and saved["backbone"] == "tiny_cnn"


def test_augmented_copies_add_augmented_views_to_a_head_only_run(
    colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_tiny(colour_dataset, tmp_path / "m", "--augmented-copies", "2") == 0
    saved = json.loads((tmp_path / "m" / "model.json").read_text())["recipe"]
    assert saved["cached_views"] == 3
    assert "3 view(s) per picture" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{missing}", "--out", "{out}"], "does not exist"),
        (["train", "{data}", "--out", "{out}", "--backbone", "resnet-18"], "Did you mean"),
        (["train", "{data}", "--out", "{out}", "--freeze", "some"], "Unknown freeze preset"),
        (["train", "{data}", "--out", "{out}", "--epochs", "zero"], "invalid int value"),
        (["train", "{data}", "--out", "{out}", "--augmented-copies", "99"], "augmented copies"),
        (["train", "{data}", "--out", "{out}", "--weights", "{missing}.pt"], "does not exist"),
        (["predict", "{data}", "x.png"], "not a model folder"),
        (["bogus"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    args: list[str],
    message: str,
    colour_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = {"data": colour_dataset, "out": tmp_path / "out", "missing": tmp_path / "missing"}
    argv = [a.format(**values) for a in args]

    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def exit_code(argv: list[str]) -> int:
    """main()'s return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exit:
        return int(exit.code or 0)


def test_an_existing_export_stops_training_before_it_starts(
    colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    assert train_tiny(colour_dataset, out) == 0
    capsys.readouterr()
    assert train_tiny(colour_dataset, out) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "epoch" not in err
    assert train_tiny(colour_dataset, out, "--overwrite") == 0


def test_ctrl_c_stops_after_the_batch_and_still_saves_the_best_model(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "support.cli_with_tiny",
            "train",
            str(colour_dataset),
            "--out",
            str(out),
            "--backbone",
            "tiny_cnn",
            "--epochs",
            "500",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--head-fit",
            "epochs",
            *CPU,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("epoch 2/500"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 0, rest
    assert "Stopping after this batch" in rest
    # How many epochs end before the signal lands is a race; what is exact: the saved
    # metrics are the epochs that were reported as finished, and the half-done one is not.
    announced = [
        int(match)
        for match in re.findall(r"^epoch (\d+)/500  train_loss", "".join(seen) + rest, re.M)
    ]
    saved = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert announced[:2] == [1, 2] and saved == announced
    assert len(saved) < 500
    assert json.loads((out / "model.json").read_text())["metrics"]["cancelled"] is True


def metrics_of(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def cli_subprocess(*args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "support.cli_with_tiny", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(
    "extra",
    [["--head-fit", "epochs"], ["--freeze", "last:1", "--unfreeze-after", "2"]],
    ids=["head-only", "gradual-unfreezing"],
)
def test_a_killed_run_resumes_to_the_same_result(
    colour_dataset: Path, tmp_path: Path, extra: list[str]
) -> None:
    common = [
        str(colour_dataset),
        "--backbone",
        "tiny_cnn",
        "--epochs",
        "6",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--augmentation",
        "standard",
        *CPU,
        *extra,
    ]
    whole = cli_subprocess("train", *common, "--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    out = tmp_path / "killed"
    process = cli_subprocess("train", *common, "--out", str(out))
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("epoch 4/6"):  # killed during epoch 5, after the unfreeze
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and not out.exists()
    checkpoint = tmp_path / ".killed.checkpoint.pt"
    assert checkpoint.is_file()

    resumed = cli_subprocess("train", *common, "--out", str(out), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    assert metrics_of(out) == metrics_of(tmp_path / "whole")
    assert not checkpoint.exists()


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_the_cli_refuses_a_weights_file_that_would_run_code(
    colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    marker = tmp_path / "pwned"
    torch.save({"w": _RunsCode(str(marker))}, tmp_path / "evil.pth")

    code = train_tiny(colour_dataset, tmp_path / "out", "--weights", str(tmp_path / "evil.pth"))

    assert code == 2
    assert "could run code" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_advise_prints_each_plan_and_the_recommendation(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = ("--backbone", "tiny_cnn", "--workers", "0", "--epochs", "3", *CPU)
    assert cli("advise", colour_dataset, "--json", "--budget-s", "20", *tiny) == 0
    advice = json.loads(capsys.readouterr().out)
    assert [plan["freeze"] for plan in advice["plans"]] == ["head", "last:1", "last:2", "none"]
    for plan in advice["plans"]:
        assert {"freeze", "estimated_accuracy", "estimated_seconds"} <= set(plan)
    assert advice["recommended_freeze"] in [plan["freeze"] for plan in advice["plans"]]

    assert cli("advise", colour_dataset, "--budget-s", "20", *tiny) == 0
    text = capsys.readouterr().out
    assert re.search(r"^Recommended: --freeze (head|last:\d|none)$", text, re.MULTILINE)
    assert "last:2" in text


def test_advise_refuses_a_budget_of_nothing(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for nothing in ("0", "nan", "inf"):
        assert cli("advise", colour_dataset, "--budget-s", nothing, "--backbone", "tiny_cnn") == 2
        assert "--budget-s must be a positive number" in capsys.readouterr().err
    assert cli("advise", colour_dataset, "--freeze", "last:2", "--backbone", "tiny_cnn") == 2
    assert "leave out --freeze" in capsys.readouterr().err


def console_script(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``finetune-studio-cli``'s own entry, ``run``: it ends the process
    without the interpreter's teardown."""
    code = (
        "import sys; from support.tiny import register_tiny; register_tiny(); "
        "from finetune_studio.cli import run; run(sys.argv[1:])"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_the_console_script_exits_quickly_with_everything_written(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    common = ["--backbone", "tiny_cnn", "--epochs", "3", "--batch-size", "8", *CPU]
    trained = console_script("train", str(colour_dataset), "--out", str(out), *common)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.rstrip().splitlines()[-1].startswith("Saved the model")
    assert json.loads((out / "model.json").read_text())["metrics"]["cancelled"] is False
    assert (out / "metrics.jsonl").read_text().endswith("\n")
    # Output into a pipe is block-buffered: it arrives whole, and so does the exit code.
    inspected = console_script("inspect", str(colour_dataset), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["classes"]
    refused = console_script("inspect", str(tmp_path / "nowhere"))
    assert refused.returncode == 2
    assert refused.stderr.startswith("finetune-studio-cli: ")
