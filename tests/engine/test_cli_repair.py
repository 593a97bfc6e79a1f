"""finetune-studio-cli relabel and undo: the command-line contract of issue 11."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from finetune_studio.cli import main


def cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two classes of three small files each; each file's bytes are its own name."""
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / name / f"{name}_{i}.png").write_bytes(f"{name}{i}".encode())
    return tmp_path / "data"


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".finetune-studio" not in p.parts
    }


def test_relabel_moves_prints_each_move_and_undo_puts_back(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(data)
    monkeypatch.chdir(data.parent)

    assert cli("relabel", "data", "data/cat/cat_0.png", "data/cat/cat_1.png", "--to", "dog") == 0

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "moved data/cat/cat_0.png -> data/dog/cat_0.png",
        "moved data/cat/cat_1.png -> data/dog/cat_1.png",
    ]
    assert "Moved 2 pictures into class 'dog'" in err and "undo data" in err
    assert (data / "dog/cat_0.png").read_bytes() == b"cat0"

    assert cli("undo", "data") == 0
    out, err = capsys.readouterr()
    assert "put back data/dog/cat_1.png -> data/cat/cat_1.png" in out.splitlines()
    assert "Put back 2 pictures." in err
    assert files(data) == before


def test_exclude_and_undo_all(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files(data)
    assert cli("relabel", data, data / "cat/cat_2.png", "--to", "dog") == 0
    assert cli("relabel", data, data / "dog/dog_0.png", "--exclude") == 0
    out, err = capsys.readouterr()
    assert str(data / ".finetune-studio/excluded/dog/dog_0.png") in out
    assert "out of the dataset" in err

    assert cli("undo", data, "--all") == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert files(data) == before


def test_undo_with_nothing_to_undo_says_so_and_succeeds(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("undo", data) == 0
    assert "Nothing to undo" in capsys.readouterr().err
    assert cli("undo", data, "--all", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_relabel_json_describes_the_action(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "dog/cat_0.png").write_bytes(b"another")

    assert cli("relabel", data, data / "cat/cat_0.png", "--to", "dog", "--json") == 0

    action = json.loads(capsys.readouterr().out)
    assert action["kind"] == "relabel" and action["to_class"] == "dog"
    assert action["moves"] == [
        {"from": str(data / "cat/cat_0.png"), "to": str(data / "dog/cat_0 (2).png")}
    ]
    assert action["renamed"] == [
        {"wanted": str(data / "dog/cat_0.png"), "got": str(data / "dog/cat_0 (2).png")}
    ]
    assert (data / "dog/cat_0.png").read_bytes() == b"another"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cat/cat_0.png", "--to", "cow"), "no class 'cow'"),
        (("cat/cat_9.png", "--to", "dog"), "cat_9.png: it is not found. Nothing was moved"),
        (("dog/dog_0.png", "--to", "dog"), "Already in class 'dog'"),
        (("../outside.png", "--exclude"), "not inside the dataset"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    data: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    (data.parent / "outside.png").write_bytes(b"x")
    before = files(data)
    paths_and_flags = [str(data / a) if a.endswith(".png") else a for a in args]

    assert cli("relabel", data, *paths_and_flags) == 2

    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert files(data) == before


def test_to_and_exclude_are_one_or_the_other(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as neither:
        cli("relabel", data, data / "cat/cat_0.png")
    with pytest.raises(SystemExit) as both:
        cli("relabel", data, data / "cat/cat_0.png", "--to", "dog", "--exclude")
    assert neither.value.code == both.value.code == 2
    assert "--to" in capsys.readouterr().err


def test_a_failing_move_exits_2_and_moves_nothing(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(data)
    real_replace = os.replace
    calls: list[object] = []

    def replace(source: object, destination: object) -> None:
        calls.append(source)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        real_replace(source, destination)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)

    assert cli("relabel", data, data / "cat/cat_0.png", data / "cat/cat_1.png", "--exclude") == 2

    assert "Permission denied" in capsys.readouterr().err
    assert files(data) == before
    monkeypatch.undo()
    assert cli("undo", data) == 0
    assert "Nothing to undo" in capsys.readouterr().err


def test_undo_warns_of_a_picture_gone_since_and_puts_back_the_rest(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("relabel", data, data / "cat/cat_0.png", data / "cat/cat_1.png", "--to", "dog")
    (data / "dog/cat_1.png").rename(data.parent / "kept-elsewhere.png")
    capsys.readouterr()

    assert cli("undo", data) == 0

    err = capsys.readouterr().err
    assert "cat_1.png is not there any more" in err
    assert (data / "cat/cat_0.png").read_bytes() == b"cat0"
