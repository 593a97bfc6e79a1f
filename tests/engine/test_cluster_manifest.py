"""A dataset's manifest and checking a copy against it (issue 14, hand-off to a cluster)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from finetune_studio.cli import main
from finetune_studio.cli.cluster import EXIT_DIFFERS
from finetune_studio.engine.cluster import manifest as manifest_module
from finetune_studio.engine.cluster.manifest import (
    HASH_THREADS,
    Manifest,
    build_manifest,
    hash_files,
    load_manifest,
)
from finetune_studio.engine.cluster.verify import verify_copy
from finetune_studio.engine.events import StageProgress
from finetune_studio.engine.scan import scan_folder
from support.pictures import make_photo_dataset
from support.runs import drain


def manifest_of(root: Path) -> Manifest:
    manifest = drain(build_manifest(scan_folder(root), threading.Event()))[1]
    assert manifest is not None
    return manifest


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = make_photo_dataset(tmp_path / "pets", per_class=3, size=48)
    (root / "notes.txt").write_text("not a picture")
    (root / "cat" / ".hidden.jpg").write_bytes(b"hidden")
    return root


def test_manifest_lists_each_picture_relative_with_its_size_and_sha256(dataset: Path) -> None:
    manifest = manifest_of(dataset)

    pictures = sorted(p for p in dataset.rglob("*.jpg") if not p.name.startswith("."))
    assert [entry.path for entry in manifest.files] == [
        p.relative_to(dataset).as_posix() for p in pictures
    ]
    for entry, picture in zip(manifest.files, pictures):
        assert entry.size == picture.stat().st_size
        assert entry.sha256 == hashlib.sha256(picture.read_bytes()).hexdigest()
    assert manifest.dataset == "pets"
    assert manifest.classes == ("cat", "coffee", "rocket")
    data = json.loads(manifest.to_json())
    assert data["totals"] == {"files": 9, "bytes": sum(p.stat().st_size for p in pictures)}
    assert Manifest.from_dict(data) == manifest


def test_split_folders_keep_their_place_in_the_paths(tmp_path: Path) -> None:
    root = tmp_path / "split"
    make_photo_dataset(root / "train", per_class=2, size=32)
    make_photo_dataset(root / "val", per_class=1, size=32, seed=1)

    paths = [entry.path for entry in manifest_of(root).files]

    assert "train/cat/cat_001.jpg" in paths and "val/rocket/rocket_000.jpg" in paths
    assert len(paths) == 9


def test_an_untouched_copy_matches(dataset: Path, tmp_path: Path) -> None:
    manifest = manifest_of(dataset)
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (copy / "README.txt").write_text("files that are not pictures are not the run's business")

    check = drain(verify_copy(copy, manifest, threading.Event()))[1]

    assert check.matches
    assert "matches the manifest of 'pets': 9 pictures" in check.summary()


def test_a_changed_byte_a_missing_and_an_extra_picture_are_found(
    dataset: Path, tmp_path: Path
) -> None:
    manifest = manifest_of(dataset)
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    changed = copy / "cat" / "cat_001.jpg"
    data = bytearray(changed.read_bytes())
    data[-10] ^= 0xFF  # same size: only the hash can tell
    changed.write_bytes(bytes(data))
    (copy / "coffee" / "coffee_002.jpg").unlink()
    shutil.copy(copy / "rocket" / "rocket_000.jpg", copy / "rocket" / "rocket_new.jpg")

    check = drain(verify_copy(copy, manifest, threading.Event()))[1]

    assert not check.matches
    assert check.missing == ("coffee/coffee_002.jpg",)
    assert [(c.path, c.reason) for c in check.changed] == [("cat/cat_001.jpg", "content differs")]
    assert check.extra == ("rocket/rocket_new.jpg",)
    summary = check.summary()
    for name in ("coffee/coffee_002.jpg", "cat/cat_001.jpg", "rocket/rocket_new.jpg"):
        assert name in summary
    # Sizes alone miss a changed byte, and say that hashes were not compared.
    quick = drain(verify_copy(copy, manifest, threading.Event(), sizes_only=True))[1]
    assert quick.changed == () and quick.missing == check.missing
    assert "sizes (not hashes)" in quick.summary()


def test_cancel_stops_hashing_after_the_few_files_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for i in range(300):
        path = tmp_path / f"{i:03d}.bin"
        path.write_bytes(bytes([i % 256]) * 100)
        files.append((path.name, path))
    hashed: list[Path] = []
    real_hash = manifest_module.file_sha256
    monkeypatch.setattr(
        manifest_module, "file_sha256", lambda path: hashed.append(path) or real_hash(path)
    )
    cancel = threading.Event()
    events = hash_files(files, cancel)

    first = next(events)
    cancel.set()
    outcome = drain(events)[1]

    assert first == StageProgress("Hashing pictures", 0, 300)
    assert outcome is None
    assert len(hashed) <= 2 * HASH_THREADS < len(files)


def test_hashing_reports_bounded_progress(tmp_path: Path) -> None:
    files = []
    for i in range(1000):
        path = tmp_path / f"{i:04d}.bin"
        path.write_bytes(b"x")
        files.append((path.name, path))
    events: list[StageProgress] = []
    work = hash_files(files, threading.Event())
    while True:
        try:
            events.append(next(work))
        except StopIteration as finished:
            entries = finished.value
            break

    assert len(entries) == 1000
    assert events[-1].done == events[-1].total == 1000
    assert len(events) <= manifest_module.PROGRESS_STEPS + 2


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def test_verify_data_exit_status_says_whether_the_copy_matches(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(manifest_of(dataset).to_json())
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)

    assert cli("verify-data", copy, "--manifest", manifest_path) == 0
    assert "matches the manifest" in capsys.readouterr().out

    (copy / "cat" / "cat_000.jpg").unlink()
    assert cli("verify-data", copy, "--manifest", manifest_path, "--json") == EXIT_DIFFERS
    report = json.loads(capsys.readouterr().out)
    assert report["matches"] is False and report["missing"] == ["cat/cat_000.jpg"]

    assert cli("verify-data", tmp_path / "nowhere", "--manifest", manifest_path) == 2
    assert "does not exist" in capsys.readouterr().err
    not_a_manifest = tmp_path / "recipe.json"
    not_a_manifest.write_text('{"version": 1}')
    assert cli("verify-data", copy, "--manifest", not_a_manifest) == 2
    err = capsys.readouterr().err
    assert "is not a Finetune Studio dataset manifest" in err and len(err.splitlines()) == 1


def test_a_manifest_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": manifest_module.MANIFEST_FORMAT, "version": 99}))

    with pytest.raises(manifest_module.ManifestError, match="version 99"):
        load_manifest(path)
