"""Suspected wrong labels: out-of-fold probabilities and confident learning find the
pictures we put in the wrong class folder, and the CLI's suspects and review print
them in their public form."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from finetune_studio.cli import main
from finetune_studio.engine.errors import RecipeError
from finetune_studio.engine.export import save_model_folder
from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.review.out_of_fold import assign_folds
from finetune_studio.engine.review.suspects import SuspectReport, SuspectSearch
from finetune_studio.engine.training import Trainer
from support.runs import drain
from support.tiny import TINY, make_colour_dataset, misfile


@pytest.fixture
def mislabelled(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Colour pictures, three of them moved into a wrong class folder:
    {moved path: real class}."""
    root = make_colour_dataset(tmp_path / "colours", per_class=20)
    return root, misfile(root, [("red", "blue"), ("green", "red"), ("blue", "green")])


def recipe_for(dataset: Path, freeze: str = "head") -> Recipe:
    return Recipe(
        dataset=str(dataset), backbone=TINY, workers=0, device="cpu", freeze=FreezePlan(freeze)
    )


def search(recipe: Recipe, folds: int = 5) -> SuspectReport | None:
    _, report = drain(SuspectSearch(recipe, folds=folds, feature_store=None).events())
    return report


def test_the_pictures_in_the_wrong_folder_lead_the_suspects_with_their_real_class(
    mislabelled: tuple[Path, dict[str, str]],
) -> None:
    root, moved = mislabelled
    report = search(recipe_for(root))
    assert report is not None

    top = report.suspects[: 2 * len(moved)]
    assert {s.path for s in top} >= set(moved)
    for suspect in report.suspects:
        if suspect.path in moved:
            assert report.class_names[suspect.suggested] == moved[suspect.path]
    assert report.pictures == 60  # every picture, training and validation alike
    scores = [s.score for s in report.suspects]
    assert scores == sorted(scores, reverse=True)
    assert report.note == ""


def test_a_deeper_recipe_is_told_its_suspects_come_from_the_pretrained_features(
    mislabelled: tuple[Path, dict[str, str]],
) -> None:
    report = search(recipe_for(mislabelled[0], "last:1"), folds=3)
    assert report is not None and "pretrained network's features" in report.note
    assert report.folds == 3


def test_a_cancelled_search_returns_nothing(colour_dataset: Path) -> None:
    search_ = SuspectSearch(recipe_for(colour_dataset), feature_store=None)
    search_.cancel()
    _, report = drain(search_.events())
    assert report is None


@pytest.mark.parametrize("folds", [1, 21])
def test_folds_out_of_range_are_refused(colour_dataset: Path, folds: int) -> None:
    with pytest.raises(RecipeError, match="Folds must be between 2 and 20"):
        SuspectSearch(recipe_for(colour_dataset), folds=folds)


def test_folds_share_every_class_evenly() -> None:
    labels = torch.tensor([0] * 11 + [1] * 5 + [2] * 2)
    folds = assign_folds(labels, 5, seed=0)
    for label in range(3):
        counts = torch.bincount(folds[labels == label], minlength=5)
        assert int(counts.max() - counts.min()) <= 1


def test_the_cli_prints_the_suspects_in_their_public_form(
    mislabelled: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, moved = mislabelled
    code = main(["suspects", str(root), "--backbone", TINY, "--workers", "0", "--top", "4",
                 "--json", "--device", "cpu"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert 1 <= len(rows) <= 4
    assert all(set(row) == {"path", "given", "suggested", "score"} for row in rows)
    first = rows[0]
    assert first["path"] in moved and first["suggested"] == moved[first["path"]]
    assert first["given"] == Path(first["path"]).parent.name


def test_the_cli_refuses_a_bad_top_with_exit_2(
    colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["suspects", str(colour_dataset), "--backbone", TINY, "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err


def test_review_lists_what_a_model_makes_of_any_class_per_folder_dataset(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, result = drain(Trainer(tiny_recipe).events())
    model = save_model_folder(result, tmp_path / "model")
    other = tmp_path / "other"
    shutil.copytree(colour_dataset, other)
    make_colour_dataset(other, per_class=2, colours={"purple": (150, 40, 160)})

    assert main(["review", str(model), str(other), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 * 12 + 2
    assert all(set(row) == {"path", "true", "predicted", "confidence", "loss"} for row in rows)
    assert all(row["true"] == Path(row["path"]).parent.name for row in rows)
    unknown = [row for row in rows if row["true"] == "purple"]
    assert len(unknown) == 2 and rows[-2:] == unknown  # no loss: listed last
    assert all(row["loss"] is None for row in unknown)
    losses = [row["loss"] for row in rows[:-2]]
    assert losses == sorted(losses, reverse=True)

    assert main(["review", str(model), str(other), "--json", "--misclassified"]) == 0
    wrong = json.loads(capsys.readouterr().out)
    assert wrong == [row for row in rows if row["true"] != row["predicted"]]


def test_review_takes_a_folder_of_one_class(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, result = drain(Trainer(tiny_recipe).events())
    model = save_model_folder(result, tmp_path / "model")
    reds = tmp_path / "only-red"
    shutil.copytree(colour_dataset / "red", reds / "red")

    assert main(["review", str(model), str(reds), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and {row["true"] for row in rows} == {"red"}
