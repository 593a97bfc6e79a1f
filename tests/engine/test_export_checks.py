"""A failed check keeps nothing and says which check failed by how much; the CLI's
``export`` prints the figures and records them in model.json; int8 needs the dataset."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from finetune_studio.cli import main
from finetune_studio.engine.errors import ExportError
from finetune_studio.engine.export import (
    FORMATS,
    ExportCheckFailed,
    export_into_folder,
    load_model_folder,
    save_model_folder,
)
from finetune_studio.engine.export import formats as formats_module
from finetune_studio.engine.export.checker import Runtime
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain

FAST = "torchscript"  # the quickest to write on the tiny model; the checks are the same


@pytest.fixture
def trained(tiny_recipe: Recipe) -> TrainingResult:
    result = drain(Trainer(tiny_recipe.replace(epochs=1)).events())[1]
    assert result is not None
    return result


@pytest.fixture
def model_folder(trained: TrainingResult, tmp_path: Path) -> Path:
    return save_model_folder(trained, tmp_path / "model")


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def with_runtime(monkeypatch: pytest.MonkeyPatch, name: str, change: Runtime) -> None:
    """Format ``name`` as usual, but its loaded artifact's outputs pass through ``change``."""
    spec = FORMATS[name]

    def load(path: Path) -> Runtime:
        runtime = spec.load(path)
        return lambda batch: change(runtime(batch))

    monkeypatch.setitem(formats_module.FORMATS, name, dataclasses.replace(spec, load=load))


def shuffled(outputs: np.ndarray) -> np.ndarray:
    return np.roll(outputs, 1, axis=1)  # every picture's top class becomes the next one


def test_a_disagreeing_export_keeps_nothing_and_says_by_how_much(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (model_folder / "model.json").read_text()
    with_runtime(monkeypatch, FAST, shuffled)

    with pytest.raises(ExportCheckFailed) as raised:
        export_into_folder(model_folder, load_model_folder(model_folder), FAST)

    message = str(raised.value)
    assert "failed the agreement check" in message and "100% required" in message
    assert "% of " in message and "validation pictures" in message
    assert not (model_folder / "model.torchscript.pt").exists()
    assert (model_folder / "model.json").read_text() == before
    assert not (model_folder / "predict_onnx.py").exists()
    assert not [p for p in model_folder.iterdir() if p.name.startswith(".")]


def test_same_answers_with_different_probabilities_fail_the_probability_check(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_runtime(monkeypatch, FAST, lambda outputs: outputs * 1.5)

    with pytest.raises(ExportCheckFailed, match=r"probability check.*differ .* by up to \d"):
        export_into_folder(model_folder, load_model_folder(model_folder), FAST)


def test_a_failed_check_while_writing_a_model_folder_leaves_no_folder(
    trained: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_runtime(monkeypatch, FAST, shuffled)

    with pytest.raises(ExportCheckFailed, match="TorchScript export failed the agreement"):
        save_model_folder(trained, tmp_path / "model", formats=(FAST,))
    assert list(tmp_path.iterdir()) == [tmp_path / "colours"]


def test_cli_export_prints_the_figures_and_records_them(
    model_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("export", model_folder, "--format", FAST) == 0

    out, err = capsys.readouterr()
    assert "Wrote" in err and "model.torchscript.pt" in err
    header, pytorch, torchscript = out.splitlines()[:3]
    assert header.split()[:3] == ["Format", "Agreement", "Accuracy"]
    assert pytorch.startswith("pytorch") and torchscript.startswith("torchscript")
    assert "100.0%" in torchscript and " MB" in torchscript and " ms" in torchscript
    assert "validation pictures" in out
    meta = json.loads((model_folder / "model.json").read_text())
    assert set(meta["exports"]) == {"pytorch", "torchscript"}
    assert meta["exports"]["torchscript"]["file"] == "model.torchscript.pt"
    assert not (model_folder / "predict_onnx.py").exists()  # written with ONNX only


def test_cli_export_json_and_a_second_format_keeps_the_first(
    model_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("export", model_folder, "--format", FAST) == 0
    capsys.readouterr()
    assert cli("export", model_folder, "--format", "onnx", "--json") == 0

    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"pytorch", "onnx"}
    assert printed["onnx"]["agreement"] == 1.0 and printed["onnx"]["file"] == "model.onnx"
    recorded = json.loads((model_folder / "model.json").read_text())["exports"]
    assert set(recorded) == {"pytorch", "torchscript", "onnx"}
    assert (model_folder / "predict_onnx.py").is_file()


def test_cli_export_elsewhere_leaves_model_json_alone(
    model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (model_folder / "model.json").read_text()
    out = tmp_path / "elsewhere" / "deploy.pt"
    out.parent.mkdir()

    assert cli("export", model_folder, "--format", FAST, "--out", out) == 0
    assert out.is_file() and (model_folder / "model.json").read_text() == before
    assert str(out) in capsys.readouterr().err


def test_cli_export_exit_codes(
    model_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("export", model_folder, "--format", FAST) == 0
    capsys.readouterr()
    assert cli("export", model_folder, "--format", FAST) == 2  # exists, no --overwrite
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert cli("export", model_folder, "--format", FAST, "--overwrite") == 0
    assert cli("export", tmp_path / "nothing", "--format", FAST) == 2
    with pytest.raises(SystemExit) as unknown:
        cli("export", model_folder, "--format", "coreml")
    assert unknown.value.code == 2

    with_runtime(monkeypatch, FAST, shuffled)
    capsys.readouterr()
    assert cli("export", model_folder, "--format", FAST, "--overwrite") == 2
    assert "agreement check" in capsys.readouterr().err

    def broken(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(formats_module, "check_artifact", broken)
    assert cli("export", model_folder, "--format", FAST, "--overwrite") == 1


def test_int8_says_it_needs_the_training_pictures_when_the_dataset_is_gone(
    model_folder: Path, tiny_recipe: Recipe
) -> None:
    shutil.rmtree(tiny_recipe.dataset)

    with pytest.raises(ExportError) as raised:
        export_into_folder(model_folder, load_model_folder(model_folder), "onnx-int8")

    message = str(raised.value)
    assert "int8" in message and "training pictures" in message and tiny_recipe.dataset in message
    assert not (model_folder / "model.int8.onnx").exists()


def test_without_its_pictures_a_model_is_checked_on_synthetic_inputs(
    model_folder: Path, tiny_recipe: Recipe
) -> None:
    shutil.rmtree(tiny_recipe.dataset)

    rows = export_into_folder(model_folder, load_model_folder(model_folder), FAST)

    assert rows[-1].pictures_from == "synthetic" and rows[-1].accuracy is None
    assert rows[-1].agreement == 1.0


def test_without_predictions_csv_the_recipe_split_gives_the_validation_pictures(
    model_folder: Path,
) -> None:
    listed = (model_folder / "predictions.csv").read_text().splitlines()
    (model_folder / "predictions.csv").unlink()

    rows = export_into_folder(model_folder, load_model_folder(model_folder), FAST)

    assert rows[-1].pictures_from == "validation" and rows[-1].pictures == len(listed) - 1


def test_executorch_without_its_package_says_which_extra_installs_it(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "executorch.exir", None)  # as if not installed

    with pytest.raises(ExportError, match=r"finetune-studio\[executorch\]"):
        export_into_folder(model_folder, load_model_folder(model_folder), "executorch")
    assert not (model_folder / "model.pte").exists()


def test_cli_exports_an_executorch_program(
    model_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("executorch")

    assert cli("export", model_folder, "--format", "executorch") == 0
    assert (model_folder / "model.pte").is_file()
    assert "executorch" in capsys.readouterr().out
