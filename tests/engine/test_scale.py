"""Large datasets: the check streams, the caches keep to their budgets, features are
mapped from the store rather than copied, and another run's eviction or save never
takes features away from a run that is using them."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.features import feature_batches, feature_table
from finetune_studio.engine.inspection import PROGRESS_STEPS, ScanCancelled, inspect_dataset
from finetune_studio.engine.loading import PictureKeeper
from support.tiny import TINY_PREPROCESSING, make_colour_dataset

WIDTH = 16  # floats per picture in these tests


def features_of(names: list[str], scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A distinct, recognisable feature per picture name."""
    return {name: torch.full((WIDTH,), float(hash(name) % 1000) * scale) for name in names}


def mapped_files() -> set[str]:
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return {line.split()[-1] for line in maps if len(line.split()) >= 6}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_stored_features_are_mapped_from_the_file_not_read_into_memory(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    stored = features_of([f"picture{i}" for i in range(500)])
    assert store.save("model", stored)

    opened = store.open("model")

    assert opened is not None
    assert str(tmp_path / "model.safetensors") in mapped_files()
    for name, feature in opened.select(stored).items():
        assert torch.equal(feature, stored[name])


def test_a_store_file_is_plain_safetensors(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    assert store.save("model", features_of(["a", "b"]))
    assert store.save("model", features_of(["c"]))

    tensors = load_file(str(tmp_path / "model.safetensors"))  # nothing but tensors in it

    assert list(tensors) == ["features"]
    assert tensors["features"].shape == (3, WIDTH)


def test_saving_more_features_keeps_the_stored_ones(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first, second = features_of(["a", "b"]), features_of(["c"])
    assert store.save("model", first)
    assert store.save("model", second)

    loaded = store.load("model", ["a", "b", "c", "unknown", None])

    assert set(loaded) == {"a", "b", "c"}
    for name, feature in {**first, **second}.items():
        assert torch.equal(loaded[name], feature)


def test_features_beyond_the_budget_are_not_stored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, budget_bytes=2_000)
    assert not store.save("model", features_of([f"p{i}" for i in range(100)]))
    assert store.load("model", ["p0"]) == {}
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.skipif(sys.platform == "win32", reason="a mapped file cannot be removed there")
def test_a_run_keeps_its_features_when_another_run_evicts_their_file(tmp_path: Path) -> None:
    names = [f"picture{i}" for i in range(200)]
    expected = features_of(names)
    row_bytes = WIDTH * 4
    store = FeatureStore(tmp_path, budget_bytes=300 * row_bytes + 5_000)  # one file fits
    assert store.save("first model", expected)
    in_use = store.open("first model")  # a run maps the file and trains on it
    assert in_use is not None

    # Another run's features leave no room for the first file: it is evicted.
    assert store.save("second model", features_of([f"other{i}" for i in range(200)], 2.0))

    assert not (tmp_path / "first model.safetensors").exists()
    assert store.load("first model", names) == {}  # a later run computes them again
    for name, feature in in_use.select(names).items():  # this run still has them
        assert torch.equal(feature, expected[name])


def test_a_run_keeps_its_features_when_another_run_replaces_their_file(
    tmp_path: Path,
) -> None:
    store = FeatureStore(tmp_path)
    expected = features_of(["a", "b"])
    assert store.save("model", expected)
    in_use = store.open("model")
    assert in_use is not None

    assert store.save("model", features_of([f"new{i}" for i in range(300)]))

    assert torch.equal(in_use.select(["a"])["a"], expected["a"])
    assert torch.equal(in_use.select(["b"])["b"], expected["b"])


def test_concurrent_saves_and_evictions_never_leave_a_torn_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two runs keep adding to their own files, in a budget that holds only one of them
    # once they have grown, so saves evict the other's file, while a third run keeps
    # reading both.
    store = FeatureStore(tmp_path, budget_bytes=12_000)
    evicted: list[str] = []
    unlink = Path.unlink

    def counted(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".safetensors" and not path.name.startswith("."):
            evicted.append(path.name)
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", counted)
    problems: list[str] = []
    stop = threading.Event()

    def writer(model: str) -> None:
        for round_ in range(40):
            store.save(model, features_of([f"{model}-{round_}-{i}" for i in range(3)]))

    def reader() -> None:
        while not stop.is_set():
            for model in ("left", "right"):
                opened = store.open(model)
                if opened is None:
                    continue
                for name, feature in opened.select(opened.rows).items():
                    if not torch.equal(feature, features_of([name])[name]):
                        problems.append(f"{model}: {name} has the wrong feature")

    threads = [threading.Thread(target=writer, args=(m,)) for m in ("left", "right")]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()

    assert problems == []
    assert evicted  # the budget did make the runs evict each other's files
    for path in tmp_path.glob("*.safetensors"):
        assert load_file(str(path))["features"].shape[1] == WIDTH  # every file whole
    assert not list(tmp_path.glob(".*partial*"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["garbage", "truncated", "old layout"])
def test_a_damaged_or_old_store_file_is_only_a_miss(tmp_path: Path, damage: str) -> None:
    store = FeatureStore(tmp_path)
    path = tmp_path / "model.safetensors"
    assert store.save("model", features_of(["a", "b"]))
    if damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    else:  # one tensor per picture, as the store wrote before
        save_file(features_of(["a", "b"]), str(path))

    assert store.load("model", ["a", "b"]) == {}
    assert store.save("model", features_of(["c"]))
    assert set(store.load("model", ["a", "b", "c"])) == {"c"}


def test_a_feature_table_over_the_store_batches_like_features_in_memory(
    tmp_path: Path,
) -> None:
    store = FeatureStore(tmp_path)
    assert store.save("model", features_of(["old0", "old1", "old2"]))  # an earlier run's
    keys = ["new0", "old1", None, "new1", "old0", "new2"]  # None: a vanished picture
    labels = [0, 1, 0, 1, 0, 1]
    computed = {0: features_of(["new0"])["new0"], 3: features_of(["new1"])["new1"]}
    computed[5] = features_of(["new2"])["new2"]
    stored = store.open("model")

    table = feature_table(keys, labels, computed, stored, store, "model")

    assert table.indices == [0, 1, 3, 4, 5]  # the vanished picture is left out
    assert table.matrix.shape[0] == 6  # the store's whole file, mapped: no copy
    in_memory = torch.stack([features_of([str(keys[i])])[str(keys[i])] for i in table.indices])
    features, table_labels = table.gathered()
    assert torch.equal(features, in_memory)
    assert table_labels.tolist() == [0, 1, 1, 0, 1]
    for shuffle in (False, True):
        mapped = list(table.batches(2, shuffle, seed=3))
        plain = list(feature_batches(in_memory, table_labels, 2, shuffle, seed=3))
        assert [b.indices for b in mapped] == [b.indices for b in plain]
        for a, b in zip(mapped, plain):
            assert a.images is not None and b.images is not None
            assert torch.equal(a.images, b.images)


def test_a_feature_table_without_room_in_the_store_holds_the_features_itself(
    tmp_path: Path,
) -> None:
    store = FeatureStore(tmp_path, budget_bytes=100)  # nothing fits
    keys = ["a", "b"]
    computed = {0: torch.ones(WIDTH), 1: torch.zeros(WIDTH)}

    table = feature_table(keys, [1, 0], computed, None, store, "model")

    features, labels = table.gathered()
    assert torch.equal(features, torch.stack([torch.ones(WIDTH), torch.zeros(WIDTH)]))
    assert labels.tolist() == [1, 0]


def test_the_check_reports_progress_a_bounded_number_of_times(tmp_path: Path) -> None:
    make_colour_dataset(tmp_path, per_class=400, size=20)
    reports: list[tuple[int, int]] = []

    report = inspect_dataset(tmp_path, progress=lambda *a: reports.append(a))

    assert len(report.train) + len(report.val) == 1200
    assert len(reports) <= PROGRESS_STEPS + 2  # a hundred, not one per picture
    assert reports[-1] == (1200, 1200)


def test_a_cancelled_check_stops_without_opening_the_rest(tmp_path: Path) -> None:
    make_colour_dataset(tmp_path, per_class=300, size=20)
    cancel = threading.Event()
    opened: list[Path] = []

    def check(path: Path) -> None:
        opened.append(path)
        if len(opened) == 50:
            cancel.set()

    with pytest.raises(ScanCancelled):
        inspect_dataset(tmp_path, cancel=cancel, check_picture=check)

    assert len(opened) < 150  # of 900: only the few queued per thread finished


def test_the_run_s_decoded_pictures_keep_to_their_budget(tmp_path: Path) -> None:
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=20, size=36))
    samples = [*report.train, *report.val]
    one_picture = 36 * 36 * 3
    keeper = PictureKeeper(TINY_PREPROCESSING, budget_bytes=5 * one_picture)

    for sample in samples:
        keeper(Path(sample.path))

    kept = keeper.decoded(samples)
    assert len(kept) == 5
    assert sum(image.width * image.height * 3 for image in kept.values()) <= 5 * one_picture
