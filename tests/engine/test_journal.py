"""The repair journal: pictures move between classes, leave the dataset and come back,
and no byte of a user's pictures is ever lost (issue 11)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.review.journal import (
    Move,
    Renamed,
    RepairError,
    RepairJournal,
)
from finetune_studio.engine.scan import scan_folder

Snapshot = dict[str, str]


def picture(path: Path, shade: int) -> Path:
    """A tiny PNG whose bytes differ from every other shade's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade % 256, (shade * 7) % 256, 90)).save(path)
    return path


def dataset(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            picture(root / name / f"{name}_{i}.png", 10 * c + i)
    return root


def split_dataset(root: Path) -> Path:
    dataset(root / "train")
    dataset(root / "val", per_class=2)
    return root


def snapshot(root: Path) -> Snapshot:
    """{relative path: sha256} of every file, the app's own folder left out."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".finetune-studio" not in path.relative_to(root).parts
    }


def fail_nth_replace(monkeypatch: pytest.MonkeyPatch, n: int, error: BaseException) -> None:
    """``os.replace`` raises ``error`` on its n-th call (counting from 1) only."""
    real: Callable[..., None] = os.replace
    calls = {"count": 0}

    def replace(source: object, destination: object) -> None:
        calls["count"] += 1
        if calls["count"] == n:
            raise error
        real(source, destination)

    monkeypatch.setattr(os, "replace", replace)


def scanned_names(root: Path) -> set[str]:
    scan = scan_folder(root)
    files = [p for paths in scan.train_files.values() for p in paths]
    files += [p for paths in (scan.val_files or {}).values() for p in paths]
    return {p.name for p in files}


def test_relabel_moves_pictures_and_undo_restores_every_byte(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)

    action = journal.relabel([root / "cat/cat_0.png", root / "cat/cat_1.png"], "dog")

    after = snapshot(root)
    assert after["dog/cat_0.png"] == before["cat/cat_0.png"]
    assert after["dog/cat_1.png"] == before["cat/cat_1.png"]
    assert "cat/cat_0.png" not in after and "cat/cat_1.png" not in after
    assert [(m.source, m.destination) for m in action.moves] == [
        (root / "cat/cat_0.png", root / "dog/cat_0.png"),
        (root / "cat/cat_1.png", root / "dog/cat_1.png"),
    ]
    assert action.kind == "relabel" and action.to_class == "dog"
    undone = journal.undo()
    assert undone is not None and undone.undoes == action.id
    assert snapshot(root) == before
    assert journal.undo() is None


def test_exclude_hides_pictures_from_the_scan_and_undo_brings_them_back(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data", per_class=4)
    before = snapshot(root)
    journal = RepairJournal(root)

    action = journal.exclude([root / "dog/dog_3.png"])

    assert action.moves[0].destination == journal.excluded_folder / "dog" / "dog_3.png"
    assert "dog_3.png" not in scanned_names(root)
    report = inspect_dataset(root)
    assert all(Path(s.path).name != "dog_3.png" for s in report.train + report.val)
    assert len(report.train) + len(report.val) == 7
    assert (
        hashlib.sha256(action.moves[0].destination.read_bytes()).hexdigest()
        == (before["dog/dog_3.png"])
    )

    journal.undo()
    assert "dog_3.png" in scanned_names(root)
    assert snapshot(root) == before


def test_undo_works_after_a_restart(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    first = RepairJournal(root).relabel([root / "cat/cat_2.png"], "dog")

    restarted = RepairJournal(root)
    assert [a.id for a in restarted.actions()] == [first.id]
    assert restarted.actions()[0].moves == first.moves
    undone = restarted.undo()

    assert undone is not None and undone.undoes == first.id
    assert snapshot(root) == before
    assert RepairJournal(root).actions() == []
    assert RepairJournal(root).undo() is None


def test_undo_all_puts_back_a_chain_of_actions_newest_first(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)
    moved = journal.relabel([root / "cat/cat_0.png"], "dog")
    excluded = journal.exclude([root / "dog/cat_0.png", root / "dog/dog_1.png"])
    assert [a.id for a in journal.actions()] == [moved.id, excluded.id]

    undone = RepairJournal(root).undo_all()

    assert [a.undoes for a in undone] == [excluded.id, moved.id]
    assert snapshot(root) == before
    assert journal.actions() == []


def test_a_taken_name_gets_a_new_one_and_nothing_is_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "data"
    mine = picture(root / "cat/photo.png", 1)
    theirs = picture(root / "dog/photo.png", 2)
    picture(root / "dog/photo (2).png", 3)
    before = snapshot(root)
    journal = RepairJournal(root)

    action = journal.relabel([mine], "dog")

    assert action.moves[0].destination == root / "dog/photo (3).png"
    assert action.renamed == (Renamed(root / "dog/photo.png", root / "dog/photo (3).png"),)
    after = snapshot(root)
    assert after["dog/photo.png"] == before["dog/photo.png"]
    assert after["dog/photo (2).png"] == before["dog/photo (2).png"]
    assert after["dog/photo (3).png"] == before["cat/photo.png"]
    assert theirs.exists()
    undone = journal.undo()
    assert undone is not None and undone.renamed == ()  # back under its own name
    assert snapshot(root) == before


def test_two_pictures_of_one_name_in_a_selection_both_keep_their_bytes(tmp_path: Path) -> None:
    root = split_dataset(tmp_path / "data")
    picture(root / "train/cat/same.png", 100)
    picture(root / "val/cat/same.png", 101)
    before = snapshot(root)
    journal = RepairJournal(root)

    action = journal.exclude([root / "train/cat/same.png", root / "val/cat/same.png"])

    names = sorted(m.destination.relative_to(journal.excluded_folder) for m in action.moves)
    assert names == [Path("train/cat/same.png"), Path("val/cat/same.png")]
    journal.undo()
    assert snapshot(root) == before


def test_undo_gives_a_new_name_when_the_original_place_is_taken(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    original = snapshot(root)
    journal = RepairJournal(root)
    journal.relabel([root / "cat/cat_0.png"], "dog")
    newcomer = picture(root / "cat/cat_0.png", 200)
    newcomer_bytes = newcomer.read_bytes()

    undone = journal.undo()

    assert undone is not None
    assert undone.renamed == (Renamed(root / "cat/cat_0.png", root / "cat/cat_0 (2).png"),)
    assert undone.moves == (Move(root / "dog/cat_0.png", root / "cat/cat_0 (2).png"),)
    assert newcomer.read_bytes() == newcomer_bytes
    after = snapshot(root)
    assert after["cat/cat_0 (2).png"] == original["cat/cat_0.png"]


def test_a_move_failing_midway_puts_back_the_ones_already_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)
    fail_nth_replace(monkeypatch, 3, PermissionError(13, "Permission denied"))

    paths = [root / f"cat/cat_{i}.png" for i in range(3)]
    with pytest.raises(
        RepairError, match="Permission denied.*2 already moved went back where they were"
    ):
        journal.relabel(paths, "dog")

    monkeypatch.undo()
    assert snapshot(root) == before
    assert journal.actions() == []  # rolled back: undo has nothing to do
    assert journal.undo() is None
    assert snapshot(root) == before


def test_a_read_only_target_folder_is_refused_before_anything_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path).name != "dog" and real_access(path, mode)
    )

    with pytest.raises(RepairError, match=r"dog: the folder is read-only.*Nothing was moved"):
        RepairJournal(root).relabel([root / "cat/cat_0.png", root / "cat/cat_1.png"], "dog")

    assert snapshot(root) == before
    assert RepairJournal(root).actions() == []


def make_read_only(folder: Path) -> Callable[[], None]:
    """Really read-only, for root too: chmod stops other users, and root only by the
    immutable attribute (chattr +i). Returns how to undo it; skips where neither works."""
    import shutil
    import subprocess

    if hasattr(os, "getuid") and os.getuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if (
        chattr is None
        or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode
    ):
        pytest.skip("running as root where chattr +i is not available")
    return lambda: subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_really_read_only_folder_is_refused(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    undo_read_only = make_read_only(root / "dog")
    try:
        with pytest.raises(RepairError, match="read-only|Permission denied|not permitted"):
            RepairJournal(root).relabel([root / "cat/cat_0.png"], "dog")
    finally:
        undo_read_only()
    assert snapshot(root) == before


def test_a_vanished_file_in_the_selection_is_named_and_nothing_moves(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)

    with pytest.raises(RepairError, match=r"cat_9\.png: it is not found. Nothing was moved"):
        RepairJournal(root).exclude([root / "cat/cat_0.png", root / "cat/cat_9.png"])

    assert snapshot(root) == before


def test_undo_names_a_picture_gone_since_and_puts_back_the_rest(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)
    journal.relabel([root / "cat/cat_0.png", root / "cat/cat_1.png"], "dog")
    gone = root / "dog/cat_1.png"
    gone.rename(tmp_path / "elsewhere.png")  # another program moved it away

    undone = journal.undo()

    assert undone is not None
    assert [(m.source, m.destination) for m in undone.missing] == [(gone, root / "cat/cat_1.png")]
    assert [m.destination for m in undone.moves] == [root / "cat/cat_0.png"]
    expected = {k: v for k, v in before.items() if k != "cat/cat_1.png"}
    assert snapshot(root) == expected
    assert journal.actions() == []


def test_an_undo_failing_midway_leaves_the_action_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)
    action = journal.relabel([root / "cat/cat_0.png", root / "cat/cat_1.png"], "dog")
    moved = snapshot(root)
    fail_nth_replace(monkeypatch, 2, PermissionError(13, "Permission denied"))

    with pytest.raises(RepairError, match="put back"):
        journal.undo()

    monkeypatch.undo()
    assert snapshot(root) == moved
    assert [a.id for a in journal.actions()] == [action.id]
    journal.undo()
    assert snapshot(root) == before


def test_an_action_interrupted_by_a_crash_is_undone_as_far_as_it_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        """The process dying: no rollback, no closing journal line."""

    root = dataset(tmp_path / "data")
    before = snapshot(root)
    fail_nth_replace(monkeypatch, 2, Crash())
    with pytest.raises(Crash):
        RepairJournal(root).relabel([root / f"cat/cat_{i}.png" for i in range(3)], "dog")
    monkeypatch.undo()
    assert "dog/cat_0.png" in snapshot(root)

    undone = RepairJournal(root).undo()

    assert undone is not None and undone.missing == ()
    assert snapshot(root) == before


def test_a_torn_last_journal_line_does_not_stop_undo(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)
    journal.relabel([root / "cat/cat_0.png"], "dog")
    with open(journal.journal_path, "a", encoding="utf-8") as file:
        file.write('{"v": 1, "type": "action", "id": "torn", "kind": "rel')  # a crash

    later = RepairJournal(root).exclude([root / "dog/dog_0.png"])
    assert [a.id for a in RepairJournal(root).actions()][-1] == later.id

    assert len(RepairJournal(root).undo_all()) == 2
    assert snapshot(root) == before


def test_a_journal_line_leading_out_of_the_dataset_is_never_followed(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    outside = picture(tmp_path / "outside.png", 5)
    journal = RepairJournal(root)
    journal.app_folder.mkdir()
    line = {
        "v": 1,
        "type": "action",
        "id": "evil",
        "kind": "relabel",
        "to": "dog",
        "moves": [{"from": "../stolen.png", "to": "../outside.png"}],
    }
    windows = {**line, "id": "evil2", "moves": [{"from": "cat\\..\\..\\x.png", "to": "C:/x.png"}]}
    journal.journal_path.write_text(f"{json.dumps(line)}\n{json.dumps(windows)}\n", "utf-8")

    assert journal.undo() is None
    assert outside.exists() and not (tmp_path / "stolen.png").exists()


def test_split_folders_keep_each_picture_in_its_split(tmp_path: Path) -> None:
    root = split_dataset(tmp_path / "data")
    before = snapshot(root)
    journal = RepairJournal(root)

    action = journal.relabel([root / "train/cat/cat_0.png", root / "val/cat/cat_1.png"], "dog")

    assert [m.destination for m in action.moves] == [
        root / "train/dog/cat_0.png",
        root / "val/dog/cat_1.png",
    ]
    excluded = journal.exclude([root / "val/dog/dog_0.png"])
    assert excluded.moves[0].destination == journal.excluded_folder / "val/dog/dog_0.png"
    report = inspect_dataset(root)
    assert report.split_source == "folders"
    assert all(Path(s.path).name != "dog_0.png" for s in report.val)
    journal.undo_all()
    assert snapshot(root) == before


def test_an_unknown_class_is_refused_with_the_list_of_classes(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data", classes=("cat", "dog", "fox"))

    with pytest.raises(RepairError, match=r"no class 'cow'.*cat, dog, fox"):
        RepairJournal(root).relabel([root / "cat/cat_0.png"], "cow")


def test_paths_outside_the_dataset_or_excluded_are_refused(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    journal = RepairJournal(root)
    stray = picture(tmp_path / "stray.png", 9)
    with pytest.raises(RepairError, match="not inside the dataset"):
        journal.relabel([stray], "dog")
    with pytest.raises(RepairError, match="not in a class folder"):
        journal.exclude([picture(root / "loose.png", 8)])
    excluded = journal.exclude([root / "cat/cat_0.png"]).moves[0].destination
    before = snapshot(root)
    with pytest.raises(RepairError, match="is excluded: undo its exclusion"):
        journal.relabel([excluded], "dog")
    with pytest.raises(RepairError, match="is excluded"):
        journal.exclude([excluded])
    assert snapshot(root) == before and stray.exists()


def test_pictures_already_in_the_class_stay_and_alone_are_an_error(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    journal = RepairJournal(root)

    action = journal.relabel([root / "cat/cat_0.png", root / "dog/dog_0.png"], "dog")
    assert action.unchanged == (root / "dog/dog_0.png",)
    assert [m.source for m in action.moves] == [root / "cat/cat_0.png"]
    with pytest.raises(RepairError, match="Already in class 'dog', nothing to move"):
        journal.relabel([root / "dog/dog_1.png"], "dog")


def test_relative_paths_are_taken_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)

    action = RepairJournal("data").relabel(["data/cat/cat_0.png"], "dog")

    assert action.moves[0].destination == root.resolve() / "dog/cat_0.png"
    assert (root / "dog/cat_0.png").exists()


def test_the_journal_is_one_json_object_a_line_with_paths_inside_the_dataset(
    tmp_path: Path,
) -> None:
    root = dataset(tmp_path / "data")
    journal = RepairJournal(root)
    action = journal.relabel([root / "cat/cat_0.png"], "dog")
    journal.undo()

    lines = [json.loads(line) for line in journal.journal_path.read_text().splitlines()]

    assert [line["type"] for line in lines] == ["action", "done", "undo", "done"]
    assert lines[0]["id"] == action.id and lines[0]["kind"] == "relabel"
    assert lines[0]["moves"] == [{"from": "cat/cat_0.png", "to": "dog/cat_0.png"}]
    assert lines[2]["of"] == action.id
    assert lines[2]["moves"] == [{"from": "dog/cat_0.png", "to": "cat/cat_0.png"}]


@pytest.mark.skipif(os.name == "nt", reason="Windows file names are always Unicode")
def test_a_file_name_that_is_not_utf8_moves_and_comes_back(tmp_path: Path) -> None:
    root = dataset(tmp_path / "data")
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as an old camera might write
    picture(root / "cat" / name, 90)
    before = snapshot(root)
    journal = RepairJournal(root)

    journal.relabel([root / "cat" / name], "dog")
    assert os.path.exists(os.fsencode(root / "dog") + b"/caf\xe9.png")

    assert RepairJournal(root).undo() is not None  # read back from the journal
    assert snapshot(root) == before


def test_a_file_given_as_the_dataset_is_named_as_such(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("x")
    with pytest.raises(RepairError, match="is not a folder"):
        RepairJournal(not_a_folder)
