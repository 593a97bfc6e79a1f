"""Every export format: written, loaded back by its own runtime, checked, measured, and
carrying the class names, preprocessing and calibration inside the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune_studio.engine.calibration import Calibration
from finetune_studio.engine.export import (
    FORMAT_FILES,
    FORMATS,
    available_formats,
    load_model_folder,
    save_model_folder,
)
from finetune_studio.engine.export.pictures import PictureSource, load_pictures, stratified
from finetune_studio.engine.inspection import Sample
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain
from support.tiny import TINY_PREPROCESSING, make_colour_dataset, tiny_recipe_for

FIGURES = {"file", "agreement", "accuracy", "size_bytes", "latency_ms_b1", "pictures"}
CALIBRATION = Calibration(temperature=1.5, threshold=0.3, ece_before=0.2, ece_after=0.04)


def train(dataset: Path) -> TrainingResult:
    recipe = tiny_recipe_for(dataset, epochs=3, feature_cache=False)
    result = drain(Trainer(recipe).events())[1]
    assert result is not None
    result.calibration = CALIBRATION
    return result


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One model folder with every format, shared: exporting takes seconds."""
    root = tmp_path_factory.mktemp("formats")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        result = train(make_colour_dataset(root / "colours", per_class=15))
        yield save_model_folder(result, root / "model", formats=available_formats())


def validation_pictures(folder: Path) -> tuple[torch.Tensor, list[int]]:
    loaded = load_model_folder(folder)
    pictures = PictureSource.of_folder(folder, loaded).check_pictures
    return pictures.images, list(pictures.labels)


@pytest.mark.parametrize("name", available_formats())
def test_each_format_loads_back_and_answers_like_the_model(exported: Path, name: str) -> None:
    artifact = exported / FORMAT_FILES[name]
    images, labels = validation_pictures(exported)
    loaded = load_model_folder(exported)
    with torch.inference_mode():
        expected = loaded.model(images).argmax(1).numpy()

    runtime = FORMATS[name].load(artifact)
    answers = runtime(images.numpy()).argmax(1)
    assert answers.tolist() == expected.tolist()
    assert runtime(images[:1].numpy()).shape == (1, 3)  # any batch size, one included

    row = json.loads((exported / "model.json").read_text())["exports"][name]
    assert set(row) >= FIGURES and row["file"] == artifact.name
    assert row["size_bytes"] == artifact.stat().st_size
    assert row["pictures"] == len(labels) and row["pictures_from"] == "validation"
    assert row["agreement"] >= (0.99 if name == "onnx-int8" else 1.0)
    assert row["accuracy"] == pytest.approx(float(np.mean(answers == np.array(labels))))
    assert row["latency_ms_b1"] > 0


def test_the_model_itself_is_measured_for_comparison(exported: Path) -> None:
    rows = json.loads((exported / "model.json").read_text())["exports"]
    assert list(rows) == ["pytorch", *available_formats()]
    assert rows["pytorch"]["file"] == "model.safetensors" and rows["pytorch"]["agreement"] == 1
    assert rows["onnx"]["accuracy"] == rows["pytorch"]["accuracy"]


def test_onnx_files_describe_themselves(exported: Path) -> None:
    import onnx

    for name in ("onnx", "onnx-int8"):
        proto = onnx.load(str(exported / FORMAT_FILES[name]))
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["finetune_studio.class_names"]) == ["blue", "green", "red"]
        preprocessing = json.loads(props["finetune_studio.preprocessing"])
        assert preprocessing == load_model_folder(exported).preprocessing.to_dict()
        calibration = json.loads(props["finetune_studio.calibration"])
        assert Calibration.from_dict(calibration) == CALIBRATION


def test_pt2_and_torchscript_carry_the_description_as_extra_files(exported: Path) -> None:
    from finetune_studio.engine.export.pt2 import read_pt2

    program, extra = read_pt2(exported / "model.pt2")
    assert json.loads(extra["class_names.json"]) == ["blue", "green", "red"]
    assert json.loads(extra["preprocessing.json"])["crop_size"] == 32
    assert Calibration.from_dict(json.loads(extra["calibration.json"])) == CALIBRATION
    assert isinstance(program, torch.export.ExportedProgram)

    scripted_extra = {"class_names.json": ""}
    torch.jit.load(str(exported / "model.torchscript.pt"), _extra_files=scripted_extra)
    assert json.loads(scripted_extra["class_names.json"]) == ["blue", "green", "red"]


def test_an_executorch_program_carries_the_description_as_constant_methods(
    exported: Path,
) -> None:
    pytest.importorskip("executorch")
    from finetune_studio.engine.export.executorch_pte import read_pte_description

    description = read_pte_description(exported / "model.pte")
    assert json.loads(description["class_names"]) == ["blue", "green", "red"]
    assert json.loads(description["preprocessing"])["crop_size"] == 32
    assert Calibration.from_dict(json.loads(description["calibration"])) == CALIBRATION


def test_the_standalone_script_goes_beside_the_onnx_files(exported: Path) -> None:
    assert (exported / "predict_onnx.py").is_file()


def test_the_int8_file_is_smaller_and_quantised(exported: Path) -> None:
    import onnx

    graph = onnx.load(str(exported / "model.int8.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    head = next(node for node in graph.node if node.op_type == "Gemm")
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert not set(head.input) & dequantized  # the classifier head stays in float
    assert (exported / "model.int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size


def test_a_capped_sample_keeps_every_class() -> None:
    samples = [Sample(f"{label}-{i}", label) for label in range(3) for i in range(50 * label + 1)]

    chosen = stratified(samples, 10)

    assert len(chosen) == 10 and {s.label for s in chosen} == {0, 1, 2}
    assert stratified(samples, 10) == chosen  # the same pictures every time
    assert len(stratified(samples, 1000)) == len(samples)


def test_unreadable_pictures_fall_back_to_synthetic_inputs(tmp_path: Path) -> None:
    pictures = load_pictures([Sample(str(tmp_path / "gone.png"), 0)], TINY_PREPROCESSING)
    assert pictures.source == "synthetic" and set(pictures.labels) == {-1}
