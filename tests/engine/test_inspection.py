"""Scanning, validating and splitting dataset folders."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from finetune_studio.engine.errors import DatasetError
from finetune_studio.engine.inspection import inspect_dataset, stratified_split
from finetune_studio.engine.scan import scan_folder


def save_picture(
    path: Path, size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (120, 30, 200)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A valid PNG header that claims a huge picture (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_classes_are_subfolders_and_nested_pictures_belong_to_them(tmp_path: Path) -> None:
    save_picture(tmp_path / "cats" / "a.png")
    save_picture(tmp_path / "cats" / "indoor" / "sofa" / "b.jpg")
    save_picture(tmp_path / "dogs" / "c.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not a picture")
    save_picture(tmp_path / "dogs" / ".hidden.png")
    save_picture(tmp_path / ".thumbnails" / "x.png")

    scan = scan_folder(tmp_path)

    assert scan.classes == ("cats", "dogs")
    assert sorted(p.name for p in scan.train_files["cats"]) == ["a.png", "b.jpg"]
    assert [p.name for p in scan.train_files["dogs"]] == ["c.png"]


def test_a_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    save_picture(tmp_path / "a" / "1.png")
    save_picture(tmp_path / "b" / "2.png")
    os.symlink(tmp_path, tmp_path / "a" / "loop")

    scan = scan_folder(tmp_path)

    # Each picture once: the link back to the top is not walked again and again.
    assert [p.name for p in scan.train_files["a"]].count("1.png") == 1
    assert [p.name for p in scan.train_files["b"]] == ["2.png"]


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_split_folders_are_used_as_the_split(tmp_path: Path, val_name: str) -> None:
    for split, count in (("train", 3), (val_name, 2)):
        for cls in ("ants", "bees"):
            for i in range(count):
                save_picture(tmp_path / split / cls / f"{i}.png")

    report = inspect_dataset(tmp_path)

    assert report.split_source == "folders"
    assert report.classes == ("ants", "bees")
    assert report.train_counts == [3, 3]
    assert report.val_counts == [2, 2]


def test_random_split_is_stratified_seeded_and_keeps_one_per_class(tmp_path: Path) -> None:
    files = {
        "big": [tmp_path / f"b{i}.png" for i in range(50)],
        "pair": [tmp_path / "p0.png", tmp_path / "p1.png"],
        "single": [tmp_path / "s0.png"],
    }
    classes = ["big", "pair", "single"]

    train, val = stratified_split(files, classes, 0.2, seed=7)
    train_again, val_again = stratified_split(files, classes, 0.2, seed=7)
    _, val_other_seed = stratified_split(files, classes, 0.2, seed=8)

    val_per_class = [sum(s.label == i for s in val) for i in range(3)]
    assert val_per_class == [10, 1, 0]
    assert len(train) + len(val) == 53
    assert (train, val) == (train_again, val_again)
    assert val != val_other_seed


@pytest.mark.parametrize("keeping", [False, True], ids=["check", "check-and-keep"])
def test_unusable_files_are_skipped_with_plain_reasons(tmp_path: Path, keeping: bool) -> None:
    # A run's own check keeps the decoded pictures (PictureKeeper): it rejects the same ones.
    from finetune_studio.engine.backbones import get_spec
    from finetune_studio.engine.images import inspect_image
    from finetune_studio.engine.loading import PictureKeeper

    check = PictureKeeper(get_spec("resnet18").preprocessing, 1 << 30) if keeping else None

    for i in range(3):
        save_picture(tmp_path / "good" / f"{i}.png")
        save_picture(tmp_path / "other" / f"{i}.png")
    bad = tmp_path / "good"
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("hello, I am not a picture")
    full = bad / "full.jpg"
    Image.new("RGB", (200, 200), (10, 200, 10)).save(full, quality=95)
    (bad / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    save_picture(bad / "tiny.png", size=(1, 1))
    save_picture(bad / "strip.png", size=(4000, 8))
    png_claiming_size(bad / "bomb.png", 30000, 30000)
    (bad / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")

    progress: list[tuple[int, int]] = []
    report = inspect_dataset(
        tmp_path,
        progress=lambda done, total: progress.append((done, total)),
        check_picture=check or inspect_image,
    )

    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["text.jpg"] == "not an image"
    assert reasons["truncated.jpg"] == "truncated"
    assert reasons["tiny.png"].startswith("too small (1x1)")
    assert reasons["strip.png"].startswith("too small (4000x8)")
    assert reasons["bomb.png"].startswith("too many pixels")
    assert reasons["phone.heic"] == "unsupported format (HEIC)"
    assert len(report.train) + len(report.val) == 6
    assert progress[-1] == (13, 13)
    if check is not None:
        import numpy as np

        from finetune_studio.engine.images import load_for_model

        samples = report.train + report.val
        kept = check.decoded(samples)
        assert len(kept) == 6
        for index, sample in enumerate(samples):  # as the model first sees them
            expected = load_for_model(sample.path, 256, "bilinear")
            assert np.array_equal(np.asarray(kept[index]), np.asarray(expected))


def test_fewer_than_two_classes_is_a_clear_error(tmp_path: Path) -> None:
    save_picture(tmp_path / "only" / "a.png")
    with pytest.raises(DatasetError, match="only the class folder 'only'.*at least 2 classes"):
        inspect_dataset(tmp_path)


def test_missing_folder_and_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        inspect_dataset(tmp_path / "nope")
    picture = save_picture(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="is a file"):
        inspect_dataset(picture)


def test_a_class_without_usable_pictures_is_named(tmp_path: Path) -> None:
    save_picture(tmp_path / "good" / "a.png")
    save_picture(tmp_path / "good" / "b.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"")

    report = inspect_dataset(tmp_path)

    assert report.errors and "'broken'" in report.errors[0]
    with pytest.raises(DatasetError, match="'broken' has no usable pictures"):
        report.require_trainable()


def test_imbalance_is_warned_about(tmp_path: Path) -> None:
    for i in range(30):
        save_picture(tmp_path / "many" / f"{i}.png")
    for i in range(5):
        save_picture(tmp_path / "few" / f"{i}.png")

    report = inspect_dataset(tmp_path)

    assert any("imbalanced" in w for w in report.warnings)
