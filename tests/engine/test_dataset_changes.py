"""A dataset that changes while a run is going: the run finishes on the pictures it
started with, counts those that went missing, and says so; pictures added after the
check are left out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finetune_studio.engine.events import Event, FitEnd, Log
from finetune_studio.engine.feature_store import FeatureStore, file_key
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain

PATHS = {"cached features": {}, "whole network": {"feature_cache": False}}


def run(trainer: Trainer) -> tuple[list[Event], TrainingResult]:
    events, result = drain(trainer.events())
    return events, result  # type: ignore[return-value]


def warnings(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Log) and e.level == "warning"]


def finished_in_full(events: list[Event], recipe: Recipe) -> bool:
    end = [e for e in events if isinstance(e, FitEnd)]
    return len(end) == 1 and not end[0].cancelled and end[0].epochs_completed == recipe.epochs


@pytest.mark.parametrize("path", PATHS)
def test_a_picture_deleted_after_the_check_is_counted_and_the_run_finishes(
    tiny_recipe: Recipe, tmp_path: Path, path: str
) -> None:
    recipe = tiny_recipe.replace(**PATHS[path])
    report = inspect_dataset(recipe.dataset)
    deleted = report.train[3].path
    Path(deleted).unlink()

    trainer = Trainer(recipe, dataset=report, feature_store=FeatureStore(tmp_path / "cache"))
    events, result = run(trainer)

    assert finished_in_full(events, recipe)
    assert trainer.unreadable == {deleted}
    said = warnings(events)
    assert any("1 picture(s) could not be read during the run" in m for m in said)
    assert sum(deleted in m for m in said) == 1  # named once, not once per epoch
    assert result.evaluation is not None
    assert result.evaluation.images == len(report.val)


@pytest.mark.parametrize("budget", [0, 1 << 30], ids=["nothing kept", "all kept"])
def test_a_picture_deleted_after_a_run_s_own_check(
    tiny_recipe: Recipe, tmp_path: Path, budget: int
) -> None:
    # Deleted as the check reports its end: before any feature is computed.
    victim = sorted(Path(tiny_recipe.dataset).rglob("*.png"))[5]

    def progress(done: int, total: int) -> None:
        if done == total:
            victim.unlink()

    trainer = Trainer(
        tiny_recipe,
        scan_progress=progress,
        decode_budget_bytes=budget,
        feature_store=FeatureStore(tmp_path / "cache"),
    )
    events, _ = run(trainer)

    assert not victim.exists()
    assert finished_in_full(events, tiny_recipe)
    if budget:  # the check kept it decoded: trained on as it was checked
        assert trainer.unreadable == set()
    else:
        assert trainer.unreadable == {str(victim)}
        assert any("could not be read during the run" in m for m in warnings(events))


@pytest.mark.parametrize("path", PATHS)
def test_a_picture_added_after_the_check_is_left_out(
    tiny_recipe: Recipe, tmp_path: Path, path: str
) -> None:
    recipe = tiny_recipe.replace(**PATHS[path])
    report = inspect_dataset(recipe.dataset)
    first = Path(report.train[0].path)
    added = first.with_name("added_after_the_check.png")
    shutil.copyfile(first, added)
    cache = tmp_path / "cache"

    trainer = Trainer(recipe, dataset=report, feature_store=FeatureStore(cache))
    events, result = run(trainer)

    assert finished_in_full(events, recipe)
    assert trainer.unreadable == set()
    assert warnings(events) == []
    assert result.evaluation is not None
    assert result.evaluation.images == len(report.val)
    if path == "cached features":  # features were computed for the checked pictures only
        (stored_file,) = cache.glob("*.safetensors")
        stored = FeatureStore(cache).open(stored_file.stem)
        assert stored is not None
        assert len(stored.rows) == len(report.train) + len(report.val)
        assert file_key(added) not in stored.rows
