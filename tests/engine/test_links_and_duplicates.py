"""Links, hard links and copies: every picture is counted once, under one label."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from finetune_studio.cli import main
from finetune_studio.engine.inspection import DatasetReport, inspect_dataset
from finetune_studio.engine.scan import identical_files_across_classes


def picture(path: Path, shade: int) -> Path:
    """A small picture whose bytes differ for every ``shade``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24 + shade % 7, 24), (shade % 256, (shade * 7) % 256, 90)).save(path)
    return path


def coffee_and_cat(root: Path) -> Path:
    """13 coffee and 21 cat pictures, each class with one broken file."""
    for i in range(13):
        picture(root / "coffee" / f"coffee_{i:02d}.png", i)
    for i in range(21):
        picture(root / "cat" / f"cat_{i:02d}.png", 100 + i)
    (root / "coffee" / "broken.jpg").write_bytes(b"")
    (root / "cat" / "broken.jpg").write_text("not a picture")
    return root


def totals(report: DatasetReport) -> dict[str, int]:
    return {
        name: t + v for name, t, v in zip(report.classes, report.train_counts, report.val_counts)
    }


def labels_by_picture(report: DatasetReport) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for sample in (*report.train, *report.val):
        real = os.path.realpath(sample.path)
        labels.setdefault(real, set()).add(report.classes[sample.label])
    return labels


def test_a_link_back_to_the_dataset_root_adds_no_pictures(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    os.symlink(root, root / "coffee" / "loop")

    report = inspect_dataset(root)

    assert totals(report) == {"cat": 21, "coffee": 13}
    assert all(len(labels) == 1 for labels in labels_by_picture(report).values())
    skipped = [Path(s.path).relative_to(root).as_posix() for s in report.skipped]
    assert skipped == ["cat/broken.jpg", "coffee/broken.jpg"]
    assert any("coffee/loop" in warning for warning in report.warnings)


def test_a_link_to_another_class_adds_none_of_its_pictures(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    os.symlink(root / "cat", root / "coffee" / "cats")
    os.symlink(root / "cat" / "cat_00.png", root / "coffee" / "a_cat.png")
    os.symlink(tmp_path, root / "coffee" / "above")  # holds the whole dataset

    report = inspect_dataset(root)

    assert totals(report) == {"cat": 21, "coffee": 13}
    assert all(len(labels) == 1 for labels in labels_by_picture(report).values())
    assert len(report.skipped) == 2


def test_a_link_to_a_folder_outside_the_dataset_is_still_followed(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    for i in range(4):
        picture(tmp_path / "elsewhere" / f"more_{i}.png", 200 + i)
    os.symlink(tmp_path / "elsewhere", root / "coffee" / "more")
    lone = picture(tmp_path / "lone" / "cat.png", 300)
    os.symlink(lone, root / "cat" / "outside.png")

    report = inspect_dataset(root)

    assert totals(report) == {"cat": 22, "coffee": 17}


def test_a_picture_reached_twice_in_its_class_is_counted_once(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    os.link(root / "coffee" / "coffee_00.png", root / "coffee" / "hard_copy.png")
    os.symlink(root / "coffee" / "coffee_01.png", root / "coffee" / "soft_copy.png")
    (root / "coffee" / "nested").mkdir()
    os.symlink(root / "coffee", root / "coffee" / "nested" / "again")

    report = inspect_dataset(root)

    assert totals(report) == {"cat": 21, "coffee": 13}
    assert len(report.skipped) == 2


def test_a_hard_link_into_another_class_is_counted_once_and_named(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    os.link(root / "cat" / "cat_05.png", root / "coffee" / "mystery.png")

    report = inspect_dataset(root)

    assert sum(totals(report).values()) == 34
    assert all(len(labels) == 1 for labels in labels_by_picture(report).values())
    named = [w for w in report.warnings if "cat/cat_05.png" in w and "coffee/mystery.png" in w]
    assert len(named) == 1


def test_identical_pictures_in_two_classes_are_a_warning_naming_both(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    (root / "coffee" / "copy.png").write_bytes((root / "cat" / "cat_03.png").read_bytes())

    report = inspect_dataset(root)

    assert totals(report) == {"cat": 21, "coffee": 14}
    named = [w for w in report.warnings if "cat/cat_03.png" in w and "coffee/copy.png" in w]
    assert len(named) == 1 and "two labels" in named[0]


def test_identical_pictures_in_one_class_are_no_warning(tmp_path: Path) -> None:
    root = coffee_and_cat(tmp_path / "data")
    (root / "cat" / "copy.png").write_bytes((root / "cat" / "cat_03.png").read_bytes())

    report = inspect_dataset(root)

    assert totals(report)["cat"] == 22
    assert not any("copy.png" in w for w in report.warnings)


def test_only_files_whose_sizes_collide_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same_a = tmp_path / "a" / "same.bin"
    same_b = tmp_path / "b" / "same.bin"
    unique = tmp_path / "b" / "unique.bin"
    for path, data in ((same_a, b"x" * 10), (same_b, b"x" * 10), (unique, b"y" * 11)):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    opened: list[str] = []
    real_open = builtins.open

    def spy(file: str | Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    groups = identical_files_across_classes({"a": [same_a], "b": [same_b, unique]})

    assert groups == [[("a", same_a), ("b", same_b)]]
    assert str(unique) not in opened


def test_inspect_json_counts_each_picture_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = coffee_and_cat(tmp_path / "data")
    os.symlink(root, root / "coffee" / "loop")
    os.link(root / "cat" / "cat_00.png", root / "cat" / "again.png")

    assert main(["inspect", str(root), "--json"]) == 0

    out = json.loads(capsys.readouterr().out)
    counts = {c["name"]: c["train"] + c["val"] for c in out["classes"]}
    assert counts == {"cat": 21, "coffee": 13}
    assert out["train_images"] + out["val_images"] == 34
    assert sorted(Path(s["path"]).name for s in out["skipped"]) == ["broken.jpg", "broken.jpg"]


@pytest.mark.parametrize("split", ["val"])
def test_split_folders_do_not_borrow_pictures_through_links(tmp_path: Path, split: str) -> None:
    root = tmp_path / "data"
    coffee_and_cat(root / "train")
    coffee_and_cat(root / split)
    os.symlink(root / split / "cat", root / "train" / "coffee" / "val_cats")
    os.symlink(root, root / split / "cat" / "everything")

    report = inspect_dataset(root)

    assert report.split_source == "folders"
    assert report.train_counts == [21, 13] and report.val_counts == [21, 13]
    assert len(report.skipped) == 4
