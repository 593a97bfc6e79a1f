"""Issue 12: `finetune-studio-cli compare DATA [--backbones a,b,c] [--per-class N]
[--json]`, its public JSON form, its table, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_studio.cli import main
from support.tiny import TINY

PUBLIC_KEYS = {
    "backbone",
    "accuracy",
    "accuracy_std",
    "latency_ms_b1",
    "latency_ms_b32",
    "params",
    "size_mb",
}
QUICK = ["--workers", "0", "--device", "cpu"]


def test_json_gives_one_entry_per_backbone_in_the_public_form(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["compare", str(colour_dataset), "--backbones", f"{TINY}, {TINY}",
                 "--per-class", "4", "--json", *QUICK])  # fmt: skip
    assert code == 0
    output = capsys.readouterr()
    entries = json.loads(output.out)
    assert len(entries) == 1  # a name given twice is compared once
    entry = entries[0]
    assert set(entry) == PUBLIC_KEYS and entry["backbone"] == TINY
    assert 0.9 <= entry["accuracy"] <= 1.0 and entry["accuracy_std"] >= 0
    assert entry["latency_ms_b1"] > 0 and entry["latency_ms_b32"] > 0
    assert isinstance(entry["params"], int) and entry["params"] > 0
    assert "on 12 of your pictures, 5-fold" in output.err


def test_without_json_it_prints_a_table_most_accurate_first(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["compare", str(colour_dataset), "--backbones", TINY, "--per-class", "3", *QUICK]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["backbone", "accuracy"]
    assert len(lines) == 2 and lines[1].startswith(TINY)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--per-class", "1"], "Pictures per class must be at least 2, got 1."),
        (["--backbones", "resnet_18"], "Did you mean resnet18"),
        (["--backbones", ","], "name at least one"),
    ],
)
def test_bad_choices_exit_2_with_one_line(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert main(["compare", str(colour_dataset), *options, *QUICK]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
