"""Training under torchrun: two gloo processes on the CPU, with the tiny backbone.

Each test starts real processes (torchrun, or two CLI processes given torchrun's
environment by hand), as a user's launch would.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from finetune_studio.engine.errors import RecipeError
from finetune_studio.engine.training.distributed import Processes
from support.tiny import make_colour_dataset

TESTS = Path(__file__).resolve().parents[1]
TRAIN = ["--backbone", "tiny_cnn", "--batch-size", "8", "--workers", "0", "--device", "cpu"]
WHOLE = ["--freeze", "none"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def _torchrun(
    tmp_path: Path, *args: str, processes: int = 2, cli: str = "support.cli_with_tiny"
) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", cli, "train", *args,
    ]  # fmt: skip


def _run(tmp_path: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=_env(tmp_path), timeout=300, check=False
    )


def _one_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "support.cli_with_tiny", "train", *args]
    return _run(tmp_path, command)


def _history(folder: Path) -> list[dict[str, float]]:
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _predicted_paths(folder: Path) -> list[str]:
    with (folder / "predictions.csv").open(newline="", encoding="utf-8") as rows:
        return [row["path"] for row in csv.DictReader(rows)]


def _final_accuracy(folder: Path) -> float:
    accuracy: float = json.loads((folder / "model.json").read_text())["metrics"]["val_acc"]
    return accuracy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class WholeNetworkRun:
    dataset: Path
    args: list[str]
    folder: Path
    log: str


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> WholeNetworkRun:
    """Every layer trained by two processes, start to end: the reference run."""
    root = tmp_path_factory.mktemp("ddp")
    dataset = make_colour_dataset(root / "colours")
    args = [str(dataset), *TRAIN, *WHOLE, "--epochs", "10"]
    folder = root / "runs" / "two"
    done = _run(root, _torchrun(root, *args, "--out", str(folder)))
    assert done.returncode == 0, done.stderr
    return WholeNetworkRun(dataset, args, folder, done.stderr)


def test_two_processes_write_one_model_as_good_as_one_process(
    two_process_run: WholeNetworkRun, tmp_path: Path
) -> None:
    runs = two_process_run.folder.parent
    single = _one_process(tmp_path, *two_process_run.args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr

    # One model folder, one metrics.jsonl, nothing else written by either process.
    assert sorted(p.name for p in runs.iterdir()) == ["two"]
    assert len(list(runs.rglob("metrics.jsonl"))) == 1
    assert [row["epoch"] for row in _history(runs / "two")] == list(range(1, 11))
    assert two_process_run.log.count("Saved the model") == 1
    # Each process validated its share; the model folder holds every picture's once.
    shared = _predicted_paths(runs / "two")
    assert len(shared) == len(set(shared)) == 6
    assert sorted(shared) == sorted(_predicted_paths(tmp_path / "one"))
    # The same global batch of 8 (4 per process): accuracy close to one process's.
    assert _final_accuracy(runs / "two") >= _final_accuracy(tmp_path / "one") - 0.2
    assert _final_accuracy(runs / "two") >= 0.8


def test_head_only_features_are_computed_once_and_give_the_same_model(
    colour_dataset: Path, tmp_path: Path
) -> None:
    args = [str(colour_dataset), *TRAIN, "--epochs", "5"]
    single = _one_process(tmp_path / "a", *args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = _run(tmp_path / "b", _torchrun(tmp_path, *args, "--out", str(tmp_path / "two")))
    assert double.returncode == 0, double.stderr

    assert "Computing features: shared between 2 processes." in double.stderr
    one = (tmp_path / "one" / "model.safetensors").read_bytes()
    assert (tmp_path / "two" / "model.safetensors").read_bytes() == one


def test_a_stopped_two_process_run_resumes_to_the_uninterrupted_result(
    two_process_run: WholeNetworkRun, tmp_path: Path
) -> None:
    args = two_process_run.args
    out = tmp_path / "model"
    checkpoint = tmp_path / ".model.checkpoint.pt"
    launch = subprocess.Popen(
        _torchrun(tmp_path, *args, "--out", str(out)),
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    while not checkpoint.exists() and launch.poll() is None:
        time.sleep(0.02)  # the first epoch's checkpoint: then stop as Ctrl-C would
    launch.send_signal(signal.SIGINT)
    _, stopped_log = launch.communicate(timeout=300)
    assert checkpoint.exists(), stopped_log
    assert "keeping the best model so far" in stopped_log
    assert (out / "model.json").exists()  # the best model so far, as in one process

    resumed = _run(tmp_path, _torchrun(tmp_path, *args, "--out", str(out), "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed after epoch" in resumed.stderr
    assert not checkpoint.exists()

    def losses(folder: Path) -> list[tuple[int, float]]:
        return [(row["epoch"], round(row["val_loss"], 5)) for row in _history(folder)]

    assert losses(out) == losses(two_process_run.folder)


def _by_hand(tmp_path: Path, rank: int, port: int, *args: str) -> subprocess.Popen[str]:
    """A CLI process given torchrun's environment by hand (what torchrun itself sets)."""
    env = {
        **_env(tmp_path),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    command = [sys.executable, "-m", "support.cli_with_tiny", "train", *args]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)


def test_processes_given_different_recipes_refuse_to_train(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    port = _free_port()
    common = [str(colour_dataset), *TRAIN, "--out", str(out), "--dist-timeout", "60"]
    first = _by_hand(tmp_path, 0, port, *common, "--epochs", "3")
    second = _by_hand(tmp_path, 1, port, *common, "--epochs", "4")
    logs = [process.communicate(timeout=300)[1] for process in (first, second)]
    assert [first.returncode, second.returncode] == [2, 2], logs
    assert "rank 0: Process(es) 1 have a different recipe from process 0" in logs[0]
    assert not out.exists()


def test_an_unreachable_master_is_named_and_nothing_is_written(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    lonely = _by_hand(
        tmp_path, 1, _free_port(), str(colour_dataset), *TRAIN,
        "--out", str(out), "--dist-timeout", "3",
    )  # fmt: skip
    _, log = lonely.communicate(timeout=120)
    assert lonely.returncode == 2, log
    assert "rank 1: Process 1 of 2 could not join the others at 127.0.0.1:" in log
    assert "Traceback" not in log
    assert not out.exists()


def test_when_one_process_fails_all_end_and_the_rank_is_named(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = [str(colour_dataset), *TRAIN, "--out", str(out)]
    failed = _run(tmp_path, _torchrun(tmp_path, *args))
    assert failed.returncode != 0
    assert "rank 0: " in failed.stderr and "already holds files" in failed.stderr
    assert "rank 1: Process 0 cannot write the model" in failed.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_process_that_crashes_mid_step_ends_the_run_without_a_model(
    colour_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    args = [str(colour_dataset), *TRAIN, *WHOLE, "--backbone", "tiny_fails_on_rank_1"]
    crashed = _run(
        tmp_path,
        _torchrun(tmp_path, *args, "--out", str(out), cli="support.cli_with_failing_rank"),
    )
    assert crashed.returncode != 0
    assert "rank 1: internal error: RuntimeError('the GPU fell off the bus')" in crashed.stderr
    assert not out.exists()


def test_the_global_batch_must_divide_between_the_processes() -> None:
    assert Processes(rank=1, world_size=4).per_process_batch(32) == 8
    with pytest.raises(RecipeError, match="multiple of 3"):
        Processes(rank=0, world_size=3).per_process_batch(32)
    assert Processes(rank=1, world_size=3).shard(list(range(8))) == [1, 4, 7]
