"""Run storage: every run kept beside its project, reopened as it was, deleted safely."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch

from finetune_studio.engine.events import EpochEnd
from finetune_studio.engine.export import save_model_folder
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.recipe_diff import freeze_in_words, recipe_diff
from finetune_studio.engine.runs import (
    RUN_FILE,
    RunRecord,
    RunStore,
    RunStoreError,
    runs_folder_for,
)
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain
from support.tiny import tiny_recipe_for

STARTED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone.utc)


def train(recipe: Recipe) -> TrainingResult:
    _, result = drain(Trainer(recipe).events())
    return result


@pytest.fixture
def trained(tiny_recipe: Recipe) -> TrainingResult:
    return train(tiny_recipe)


def pictures(dataset: Path) -> list[Path]:
    return sorted(dataset.rglob("*.png"))[::4]


def test_a_kept_run_reopens_with_its_numbers_and_a_model_that_predicts_the_same(
    trained: TrainingResult, tmp_path: Path, colour_dataset: Path
) -> None:
    RunStore(tmp_path / "p.runs").save(trained, STARTED)

    reopened_store = RunStore(tmp_path / "p.runs")  # as after a restart
    [record] = reopened_store.runs()
    result = reopened_store.load(record)

    assert record.started == STARTED
    assert result.recipe == trained.recipe
    assert result.class_names == trained.class_names
    assert result.evaluation == trained.evaluation
    assert result.evaluation is not None
    assert result.evaluation.per_class_accuracy == trained.evaluation.per_class_accuracy
    assert result.history == trained.history
    assert (result.best_epoch, result.unit) == (trained.best_epoch, trained.unit)
    assert result.metrics() == trained.metrics()
    files = pictures(colour_dataset)
    before = Predictor(trained.model, trained.class_names, trained.preprocessing).predict(files)
    after = Predictor(result.model, result.class_names, result.preprocessing).predict(files)
    assert [p.top[0][0] for p in after] == [p.top[0][0] for p in before]
    for old, new in zip(before, after):
        assert new.top[0][1] == pytest.approx(old.top[0][1], abs=1e-6)


def test_a_run_folder_holds_the_record_and_an_ordinary_model_folder(
    trained: TrainingResult, tmp_path: Path
) -> None:
    record = RunStore(tmp_path / "runs").save(trained, STARTED)

    assert record.folder.parent == tmp_path / "runs"
    assert record.folder.name.startswith(STARTED.astimezone().strftime("%Y%m%d-%H%M%S"))
    assert sorted(p.name for p in record.folder.iterdir()) == ["model", RUN_FILE]
    assert sorted(p.name for p in record.model_folder.iterdir()) == [
        "metrics.jsonl",
        "model.json",
        "model.safetensors",
        "predictions.csv",
    ]
    kept = json.loads((record.folder / RUN_FILE).read_text())
    assert kept["recipe"] == trained.recipe.to_dict()
    assert len(kept["history"]) == len(trained.history) == trained.recipe.epochs
    assert kept["evaluation"]["accuracy"] == trained.evaluation.accuracy
    assert kept["evaluation"]["confusion"] == []  # in model/model.json: run.json stays small
    assert datetime.fromisoformat(kept["started"]) == STARTED


def test_runs_are_listed_newest_first_and_two_in_one_second_keep_two_folders(
    trained: TrainingResult, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs")
    first = store.save(trained, STARTED)
    again = store.save(trained, STARTED)
    later = store.save(trained, STARTED + timedelta(minutes=5))

    assert first.folder != again.folder
    assert [r.folder for r in store.runs()] == [later.folder, again.folder, first.folder]
    assert store.latest() == later


def test_the_latest_run_on_a_dataset_skips_runs_on_other_folders(
    trained: TrainingResult, tmp_path: Path, colour_dataset: Path
) -> None:
    store = RunStore(tmp_path / "runs")
    mine = store.save(trained, STARTED)
    other = dataclass_with_dataset(trained, str(tmp_path / "elsewhere"))
    store.save(other, STARTED + timedelta(hours=1))

    assert store.latest(colour_dataset) == mine
    assert store.latest(tmp_path / "nowhere") is None


def dataclass_with_dataset(result: TrainingResult, dataset: str) -> TrainingResult:
    return dataclasses.replace(result, recipe=result.recipe.replace(dataset=dataset))


def test_an_unfinished_or_foreign_folder_is_not_listed(
    trained: TrainingResult, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs")
    kept = store.save(trained, STARTED)
    (store.root / "half-written").mkdir()  # a crash before run.json
    (store.root / "notes").mkdir()
    (store.root / "notes" / RUN_FILE).write_text('{"format": "something else"}')
    newer = store.root / "from-a-newer-version"
    newer.mkdir()
    data = json.loads((kept.folder / RUN_FILE).read_text())
    (newer / RUN_FILE).write_text(json.dumps({**data, "format_version": 99}))

    assert [r.folder for r in store.runs()] == [kept.folder]
    assert RunStore(tmp_path / "no such folder").runs() == []


def test_a_store_that_cannot_be_written_says_so_and_leaves_nothing(
    trained: TrainingResult, tmp_path: Path
) -> None:
    blocker = tmp_path / "p.runs"
    blocker.write_text("a file where the runs folder would go")
    with pytest.raises(RunStoreError, match="Could not keep the run"):
        RunStore(blocker).save(trained, STARTED)
    assert blocker.read_text() == "a file where the runs folder would go"


def test_a_failed_save_removes_its_half_written_run(
    trained: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_studio.engine import runs

    def full_disk(*args: object, **kwargs: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs, "save_model_folder", full_disk)
    store = RunStore(tmp_path / "runs")
    with pytest.raises(RunStoreError, match="No space left"):
        store.save(trained, STARTED)
    assert list(store.root.iterdir()) == []


def test_deleting_a_run_removes_only_that_run(trained: TrainingResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    gone = store.save(trained, STARTED)
    stays = store.save(trained, STARTED + timedelta(seconds=1))
    export = save_model_folder(trained, tmp_path / "my-export")
    exported = {p.name: p.read_bytes() for p in export.iterdir()}
    # A link inside the run to the user's export: removed as a link, never followed.
    os.symlink(export, gone.folder / "shortcut-to-export")

    store.delete(gone.id)

    assert [r.folder for r in store.runs()] == [stays.folder]
    assert not gone.folder.exists()
    assert {p.name: p.read_bytes() for p in export.iterdir()} == exported


@pytest.mark.parametrize("name", ["..", ".", "", "../my-export", "linked-run", "not-a-run"])
def test_deleting_anything_but_a_run_of_the_store_is_refused(
    trained: TrainingResult, tmp_path: Path, name: str
) -> None:
    store = RunStore(tmp_path / "runs")
    kept = store.save(trained, STARTED)
    export = save_model_folder(trained, tmp_path / "my-export")
    # A link in the store to a run-shaped folder elsewhere, and a folder that is no run.
    outside_run = tmp_path / "outside-run"
    outside_run.mkdir()
    (outside_run / RUN_FILE).write_bytes((kept.folder / RUN_FILE).read_bytes())
    os.symlink(outside_run, store.root / "linked-run")
    (store.root / "not-a-run").mkdir()
    everything = sorted(str(p) for p in tmp_path.rglob("*"))

    with pytest.raises(RunStoreError, match="nothing was deleted"):
        store.delete(name)

    assert sorted(str(p) for p in tmp_path.rglob("*")) == everything
    assert (export / "model.safetensors").is_file()
    assert store.runs() == [kept]


def test_a_project_keeps_its_runs_beside_it(tmp_path: Path) -> None:
    assert runs_folder_for(tmp_path / "flowers.json") == tmp_path / "flowers.runs"


def test_weights_are_reloaded_without_unpickling(
    trained: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path / "runs")
    store.save(trained, STARTED)

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    [record] = store.runs()
    assert store.load(record).class_names == trained.class_names


# --- every run kept: failed runs, damaged folders, many runs ------------------------------


def epoch(number: int, val_acc: float | None, val_loss: float | None = 1.0) -> EpochEnd:
    return EpochEnd(number, 5, 1.2, 0.5, val_loss, val_acc, 0.01, 0.3, is_best=False)


def failed_run(store: RunStore, started: datetime = STARTED, **recipe: object) -> RunRecord:
    return store.save_failed(
        tiny_recipe_for(store.root.parent / "pictures", **recipe),
        [epoch(1, 0.4), epoch(2, 0.65)],
        started,
        "Out of memory on the GPU.",
    )


def test_a_failed_run_is_kept_with_its_recipe_epochs_and_error_but_never_reopened(
    trained: TrainingResult, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs")
    finished = store.save(trained, STARTED)
    failed = failed_run(store, STARTED + timedelta(minutes=1), epochs=5)

    [newest, oldest] = RunStore(tmp_path / "runs").runs()  # as after a restart
    assert newest == failed and oldest == finished
    assert (newest.outcome, newest.failure) == ("failed", "Out of memory on the GPU.")
    assert [e.val_acc for e in newest.history] == [0.4, 0.65]
    assert newest.best_accuracy == 0.65  # the best epoch's, as there is no final model
    assert newest.recipe.epochs == 5 and not newest.has_model
    assert not newest.model_folder.exists()
    with pytest.raises(RunStoreError, match="failed before it had a model"):
        store.load(newest)
    assert store.latest() == finished  # a reopened project gets the last model back
    store.delete(failed.id)
    assert store.runs() == [finished]


def test_damaged_and_unfinished_runs_are_skipped_with_a_reason(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    good = failed_run(store)
    (store.root / "20250101-000000-cut-short").mkdir()  # a crash before run.json
    (store.root / "bad-json").mkdir()
    (store.root / "bad-json" / RUN_FILE).write_text('{"format": "finetune-studio-run", ')
    (store.root / "missing-fields").mkdir()
    (store.root / "missing-fields" / RUN_FILE).write_text('{"format": "finetune-studio-run"}')
    (store.root / "binary").mkdir()
    (store.root / "binary" / RUN_FILE).write_bytes(b"\xff\xfe\x00garbage")

    listing = store.listing()

    assert listing.records == (good,)
    reasons = {skipped.name: skipped.reason for skipped in listing.skipped}
    assert set(reasons) == {"20250101-000000-cut-short", "bad-json", "missing-fields", "binary"}
    assert "no run.json" in reasons["20250101-000000-cut-short"]
    assert "not valid JSON" in reasons["bad-json"]
    assert "damaged" in reasons["missing-fields"]
    assert "could not be read" in reasons["binary"] or "damaged" in reasons["binary"]


def test_hundreds_of_runs_list_from_their_records_alone(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    template = failed_run(store)
    record = json.loads((template.folder / RUN_FILE).read_text())
    for number in range(1, 300):
        folder = store.root / f"run-{number:03d}"
        folder.mkdir()
        started = (STARTED + timedelta(minutes=number)).isoformat()
        (folder / RUN_FILE).write_text(json.dumps({**record, "started": started}))

    listing = store.listing()

    assert len(listing.records) == 300 and listing.skipped == ()
    assert listing.records[0].folder.name == "run-299"  # newest first


def test_deleting_a_run_whose_model_folder_links_to_an_export_keeps_the_export(
    trained: TrainingResult, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs")
    run = store.save(trained, STARTED)
    export = save_model_folder(trained, tmp_path / "my-export")
    exported = {p.name: p.read_bytes() for p in export.iterdir()}
    # The run's recorded model folder points outside the store, at the user's export.
    shutil.rmtree(run.model_folder)
    os.symlink(export, run.model_folder)
    assert [r.folder for r in store.runs()] == [run.folder]

    store.delete(run.id)

    assert not run.folder.exists()
    assert {p.name: p.read_bytes() for p in export.iterdir()} == exported


def test_two_recipes_differ_field_by_field(tmp_path: Path) -> None:
    first = tiny_recipe_for(tmp_path, lr=0.01)
    second = first.replace(
        lr=0.003,
        freeze=FreezePlan("last:2", (("features.6", False),)),
        gradual_unfreeze=GradualUnfreeze(1, ("features.5",)),
        lr_multipliers={"features.6": 0.1},
        mixed_precision=False,
    )

    differences = {d.field: (d.first, d.second) for d in recipe_diff(first, second)}

    assert differences == {
        "freeze.preset": ("head", "last:2"),
        "freeze.overrides.features.6": ("—", "frozen"),
        "lr_multipliers.features.6": ("—", "0.1"),
        "gradual_unfreeze.head_epochs": ("—", "1"),
        "gradual_unfreeze.paths": ("—", "features.5"),
        "lr": ("0.01", "0.003"),
        "mixed_precision": ("yes", "no"),
    }
    assert recipe_diff(first, first) == []
    assert [d.field for d in recipe_diff(second, first)] == list(differences)
    assert freeze_in_words(first) == "head only"
    assert freeze_in_words(second) == "last 2 blocks + head, 1 layer setting, head first (1 ep.)"


def test_a_run_keeps_how_long_it_took_and_older_runs_fall_back_to_their_epochs(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "runs")
    started = datetime.now(timezone.utc) - timedelta(seconds=90)
    kept = failed_run(store, started, epochs=5)
    [listed] = RunStore(tmp_path / "runs").runs()
    assert listed.seconds == kept.seconds and 90 <= listed.duration < 150

    run_file = listed.folder / RUN_FILE
    older = json.loads(run_file.read_text())
    del older["seconds"]  # as runs kept before the duration was recorded
    run_file.write_text(json.dumps(older))
    [reread] = store.runs()
    assert reread.seconds is None
    assert reread.duration == pytest.approx(sum(e.seconds for e in reread.history))


def test_a_run_kept_again_later_keeps_the_time_it_took(
    trained: TrainingResult, tmp_path: Path
) -> None:
    """A project saved hours after its run keeps the run again: the hours are not
    the run's."""
    hours_ago = datetime.now(timezone.utc) - timedelta(hours=5)
    RunStore(tmp_path / "project.runs").save(trained, hours_ago, seconds=120.0)
    [kept] = RunStore(tmp_path / "project.runs").runs()
    assert kept.duration == 120.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("val_acc", "high"), ("epoch", "one"), ("seconds", "nan"), ("seconds", 1e400)],
)
def test_a_record_with_text_or_nan_where_a_number_belongs_is_listed_as_damaged(
    tmp_path: Path, field: str, value: object
) -> None:
    store = RunStore(tmp_path / "runs")
    kept = failed_run(store)
    data = json.loads((kept.folder / RUN_FILE).read_text())
    if field == "seconds":
        data["seconds"] = value
    else:
        data["history"][0][field] = value
    (kept.folder / RUN_FILE).write_text(json.dumps(data))

    listing = store.listing()

    assert listing.records == ()
    [skipped] = listing.skipped
    assert skipped.name == kept.id and "damaged" in skipped.reason
