"""Model folders: what they hold, how they fail, their permissions; the calibration kept."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from finetune_studio.engine import export
from finetune_studio.engine.calibration import Calibration
from finetune_studio.engine.errors import ExportError
from finetune_studio.engine.export import (
    EXPORT_FORMATS,
    export_into_folder,
    load_model_folder,
    save_model_folder,
)
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain


@pytest.fixture
def trained(tiny_recipe: Recipe) -> TrainingResult:
    _, result = drain(Trainer(tiny_recipe.replace(epochs=1)).events())
    return result


def pictures(dataset: Path) -> list[Path]:
    return sorted(dataset.rglob("*.png"))[::5]


def test_a_model_folder_describes_itself_and_reloads_identically(
    trained: TrainingResult,
    tmp_path: Path,
    colour_dataset: Path,
) -> None:
    folder = save_model_folder(trained, tmp_path / "model")

    meta = json.loads((folder / "model.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == [
        "metrics.jsonl",
        "model.json",
        "model.safetensors",
        "predictions.csv",
    ]
    assert meta["class_names"] == ["blue", "green", "red"]
    assert meta["backbone"] == "tiny_cnn" and meta["num_classes"] == 3
    assert meta["preprocessing"]["crop_size"] == 32
    assert meta["recipe"]["dataset"] == str(colour_dataset)
    assert set(meta["versions"]) >= {"torch", "torchvision", "finetune_studio"}
    assert 0 <= meta["metrics"]["val_acc"] <= 1

    loaded = load_model_folder(folder)
    original = Predictor(trained.model, trained.class_names, trained.preprocessing)
    again = Predictor(loaded.model, loaded.class_names, loaded.preprocessing)
    batch = torch.stack([original.tensor_for(p) for p in pictures(colour_dataset)])
    assert torch.equal(original.probabilities(batch), again.probabilities(batch))
    assert original.predict(pictures(colour_dataset)) == again.predict(pictures(colour_dataset))


def test_the_calibration_travels_with_the_model_folder(
    trained: TrainingResult, tmp_path: Path
) -> None:
    calibration = Calibration(temperature=1.7, threshold=0.4, ece_before=0.2, ece_after=0.05)
    trained.calibration = calibration
    folder = save_model_folder(trained, tmp_path / "model")

    meta = json.loads((folder / "model.json").read_text())
    assert meta["calibration"]["temperature"] == 1.7
    assert load_model_folder(folder).calibration == calibration


def test_a_folder_written_before_calibration_loads_uncalibrated(
    trained: TrainingResult, tmp_path: Path
) -> None:
    folder = save_model_folder(trained, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    del meta["calibration"]
    (folder / "model.json").write_text(json.dumps(meta))

    assert load_model_folder(folder).calibration == Calibration()


def test_an_existing_export_is_kept_unless_overwrite_is_asked(
    trained: TrainingResult, tmp_path: Path
) -> None:
    folder = save_model_folder(trained, tmp_path / "model")
    stamp = (folder / "model.json").read_text()

    with pytest.raises(ExportError, match="already exists"):
        save_model_folder(trained, folder)
    assert (folder / "model.json").read_text() == stamp

    save_model_folder(trained, folder, overwrite=True)
    assert load_model_folder(folder).class_names == ("blue", "green", "red")


def test_a_folder_of_other_files_is_never_replaced(trained: TrainingResult, tmp_path: Path) -> None:
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "photo.jpg").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not a Finetune Studio export"):
        save_model_folder(trained, tmp_path / "holiday", overwrite=True)
    assert (tmp_path / "holiday" / "photo.jpg").read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        # A full disk while writing the weights.
        ("save_file", OSError(errno.ENOSPC, "No space left on device"), "No space left"),
        # An unwritable folder; chmod cannot stop root (who runs CI here), so the refusal
        # is simulated where it would happen: moving the new folder into place.
        ("os.replace", PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_a_failed_export_is_a_clear_error_and_keeps_the_previous_one(
    trained: TrainingResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    error: OSError,
    message: str,
) -> None:
    folder = save_model_folder(trained, tmp_path / "model")
    before = (folder / "model.safetensors").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    target = export.folder.os if where == "os.replace" else export.folder
    monkeypatch.setattr(target, where.rpartition(".")[2], fail)
    with pytest.raises(ExportError, match=message):
        save_model_folder(trained, folder, overwrite=True)
    monkeypatch.undo()

    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


@pytest.mark.parametrize(
    ("format_name", "converter", "shown_as"),
    [("torchscript", "jit.trace", "TorchScript"), ("onnx", "onnx.export", "ONNX")],
)
def test_a_converter_failure_names_the_format_and_keeps_the_previous_export(
    trained: TrainingResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    format_name: str,
    converter: str,
    shown_as: str,
) -> None:
    # Seen in a frozen build: onnxscript could not read its own source code.
    folder = save_model_folder(trained, tmp_path / "model")
    before = sorted(p.name for p in folder.iterdir())

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Decorator script does not work on dynamically compiled function")

    module, name = converter.split(".")
    monkeypatch.setattr(getattr(torch, module), name, fail)
    with pytest.raises(ExportError) as raised:
        save_model_folder(trained, folder, overwrite=True, formats=(format_name,))

    message = str(raised.value)
    assert f"Converting the model to {shown_as} failed" in message
    assert "Decorator script does not work" in message and f"without {shown_as}" in message
    assert sorted(p.name for p in folder.iterdir()) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a model folder"):
        load_model_folder(tmp_path)


def test_exports_get_the_users_permissions_without_touching_the_umask(
    trained: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The umask is process-wide: changing it from a worker thread races every other
    # thread creating files. Exports must neither change it nor leave files 0600.
    def refuse(mask: int) -> int:
        raise AssertionError("the process-wide umask was changed")

    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", refuse)
        folder = save_model_folder(trained, tmp_path / "model", formats=EXPORT_FORMATS)
        loaded = load_model_folder(folder)
        export_into_folder(folder, loaded, "torchscript", tmp_path / "single" / "m.pt")
        export_into_folder(folder, loaded, "onnx", tmp_path / "single" / "m.onnx")
        monkeypatch.undo()
    finally:
        os.umask(previous)

    made = [folder, *folder.iterdir(), tmp_path / "single" / "m.pt", tmp_path / "single" / "m.onnx"]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in made}
    runnable = {"predict_onnx.py"}  # the standalone script beside an ONNX export
    expected = {p.name: 0o750 if p.is_dir() or p.name in runnable else 0o640 for p in made}
    assert modes == expected
