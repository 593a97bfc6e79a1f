"""`finetune-studio-cli lr-find DATA [train options] [--json]`: the command's contract."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from finetune_studio.cli import main

TINY = ("--backbone", "tiny_cnn", "--workers", "0", "--device", "cpu", "--batch-size", "8")


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def test_json_gives_the_suggestion_and_every_rate_with_its_loss(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("lr-find", colour_dataset, "--json", "--head-fit", "epochs", *TINY) == 0
    found = json.loads(capsys.readouterr().out)
    assert set(found) == {"suggested_lr", "lrs", "losses"}
    lrs, losses = found["lrs"], found["losses"]
    assert 10 < len(lrs) <= 100 and len(losses) == len(lrs)
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)
    assert all(math.isfinite(loss) for loss in losses)
    assert found["suggested_lr"] in lrs


def test_the_table_marks_the_suggestion_and_a_solved_head_is_told(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("lr-find", colour_dataset, "--freeze", "head", *TINY) == 0
    out, err = capsys.readouterr()
    assert len(re.findall(r"<- suggested$", out, re.MULTILINE)) == 1
    suggested = re.search(r"^Suggested: --lr (\S+)$", out, re.MULTILINE)
    assert suggested is not None and float(suggested.group(1)) > 0
    assert "does not use the learning rate" in err  # head_fit optimum, the default


def test_the_train_options_shape_the_run_it_ramps(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("lr-find", colour_dataset, "--freeze", "last:1", *TINY) == 0
    err = capsys.readouterr().err
    assert "Running the whole network every epoch" in err  # pictures, not cached features
    assert "does not use the learning rate" not in err


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("lr-find", tmp_path / "missing", *TINY) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
    assert cli("lr-find", colour_dataset, "--freeze", "sideways", *TINY) == 2
    assert "Unknown freeze preset" in capsys.readouterr().err
