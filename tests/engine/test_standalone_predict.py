"""predict_onnx.py: the script beside every ONNX export answers as the app does,
with nothing but numpy, pillow and onnxruntime."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from finetune_studio.cli import main as cli_main
from finetune_studio.engine.calibration import Calibration
from finetune_studio.engine.export import export_into_folder, load_model_folder, save_model_folder
from finetune_studio.engine.export.onnx_float import add_onnx_metadata
from finetune_studio.engine.export.standalone import (
    SCRIPT_NAME,
    script_source,
    write_predict_script,
)
from finetune_studio.engine.predict import Predictor, expand_paths
from finetune_studio.engine.training import Trainer
from support.runs import drain
from support.tiny import make_colour_dataset, tiny_recipe_for

PROBABILITY_TOLERANCE = 1e-4  # the export's own parity tolerance (export/common.py)
RUNTIME_PACKAGES = ("numpy", "pillow", "onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bool]]:
    """A tiny trained model folder and its ONNX export, as ``export --format onnx``
    makes it (built once: the conversion and its checks take seconds)."""
    root = tmp_path_factory.mktemp("standalone")
    with pytest.MonkeyPatch.context() as env:  # caches in the test's folders, not the user's
        for name in ("TORCH_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
            env.setenv(name, str(root / name.lower()))
        dataset = make_colour_dataset(root / "colours")
        recipe = tiny_recipe_for(dataset, epochs=4, lr=0.05)
        _, result = drain(Trainer(recipe).events())
        folder = save_model_folder(result, root / "model")
        export_into_folder(folder, load_model_folder(folder), "onnx")
        wrote_script = (folder / SCRIPT_NAME).exists()
        write_predict_script(folder)  # the script's own tests do not depend on the export's
        yield folder, wrote_script


@pytest.fixture
def model_folder(exported: tuple[Path, bool]) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def varied_pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pictures that take every branch of the app's reading: a large JPEG (decoded at
    reduced scale), EXIF rotation, transparency, greyscale, palette, 16-bit, CMYK,
    smaller than the model's input, odd sizes; nested, beside a hidden file and a note."""
    folder = tmp_path_factory.mktemp("varied") / "pictures"
    (folder / "nested" / ".hidden").mkdir(parents=True)
    rng = np.random.default_rng(3)

    def photo(width: int, height: int, rgb: tuple[int, int, int]) -> Image.Image:
        noise = rng.normal(0, 40, (height, width, 3))
        return Image.fromarray(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))

    photo(1600, 1000, (200, 40, 40)).save(folder / "large.jpg", quality=92)
    rotated = photo(300, 200, (40, 180, 60))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated.save(folder / "nested" / "rotated.jpg", exif=exif)
    rgba = photo(70, 50, (40, 60, 200)).convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)))
    rgba.save(folder / "transparent.png")
    photo(45, 61, (200, 40, 40)).convert("L").save(folder / "grey.png")
    photo(64, 48, (40, 180, 60)).convert("P").save(folder / "nested" / "palette.png")
    deep = np.asarray(photo(40, 40, (40, 60, 200)).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(deep).save(folder / "sixteen.png")
    photo(50, 90, (200, 40, 40)).convert("CMYK").save(folder / "cmyk.jpg")
    photo(20, 17, (40, 180, 60)).save(folder / "small.png")
    photo(300, 37, (40, 60, 200)).save(folder / "wide.webp")
    photo(40, 40, (200, 40, 40)).save(folder / "nested" / ".hidden" / "skipped.png")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def load_script(path: Path) -> ModuleType:
    """The script as a module, from its file (as a user runs it: no package around it)."""
    spec = importlib.util.spec_from_file_location(f"predict_onnx_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(
    script: ModuleType, capsys: pytest.CaptureFixture[str], *args: object
) -> tuple[int, list[dict[str, Any]], str]:
    """Exit code, JSON items and what went to stderr."""
    capsys.readouterr()
    code = script.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else [], err


def validation_pictures(folder: Path) -> list[str]:
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as file:
        return [row["path"] for row in csv.DictReader(file)]


def app_predictions(folder: Path, paths: list[str], calibration: Calibration | None = None) -> Any:
    loaded = load_model_folder(folder)
    predictor = Predictor(
        loaded.model,
        loaded.class_names,
        loaded.preprocessing,
        calibration=calibration or loaded.calibration,
    )
    return [p.to_dict() for p in predictor.predict(expand_paths(paths))]


def assert_same_answers(script_items: list[dict[str, Any]], app_items: list[Any]) -> float:
    """Same paths, answers, errors and ranking; probabilities within the export's
    tolerance. Returns the largest probability difference."""
    assert [i["path"] for i in script_items] == [i["path"] for i in app_items]
    worst = 0.0
    for mine, theirs in zip(script_items, app_items):
        assert mine.keys() == theirs.keys()
        assert mine["class"] == theirs["class"], mine["path"]
        assert mine.get("error") == theirs.get("error")
        assert [t["class"] for t in mine["top"]] == [t["class"] for t in theirs["top"]]
        for a, b in zip(mine["top"], theirs["top"]):
            worst = max(worst, abs(a["probability"] - b["probability"]))
        if theirs["confidence"] is not None:
            assert mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-4)
    assert worst <= PROBABILITY_TOLERANCE
    return worst


def test_an_onnx_export_writes_the_script_beside_a_self_describing_model(
    exported: tuple[Path, bool],
) -> None:
    import onnxruntime

    model_folder, wrote_script = exported
    assert wrote_script, "export --format onnx writes predict_onnx.py into the model folder"
    assert (model_folder / SCRIPT_NAME).read_bytes() == script_source()
    session = onnxruntime.InferenceSession(str(model_folder / "model.onnx"))
    properties = session.get_modelmeta().custom_metadata_map
    loaded = load_model_folder(model_folder)
    assert json.loads(properties["finetune_studio.class_names"]) == list(loaded.class_names)
    assert json.loads(properties["finetune_studio.preprocessing"]) == (
        loaded.preprocessing.to_dict()
    )
    assert Calibration.from_dict(json.loads(properties["finetune_studio.calibration"])) == (
        loaded.calibration
    )


def test_the_script_answers_as_the_app_does(
    model_folder: Path, varied_pictures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script(model_folder / SCRIPT_NAME)
    paths = [*validation_pictures(model_folder), str(varied_pictures)]

    code, items, _ = run_script(script, capsys, *paths, "--json")  # model.onnx beside it

    assert code == 0
    assert len(items) == len(validation_pictures(model_folder)) + 9  # not the hidden one
    assert all(set(i) == {"path", "class", "confidence", "top"} for i in items)
    assert all(len(i["top"]) == 3 and set(i["top"][0]) == {"class", "probability"} for i in items)
    worst = assert_same_answers(items, app_predictions(model_folder, paths))
    print(f"largest probability difference from the app: {worst:.1e}")


def test_the_onnx_metadata_carries_temperature_and_threshold(
    model_folder: Path, varied_pictures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model.onnx alone (no model.json beside it) is enough, and its calibration is
    applied: probabilities softened by the temperature, "unknown" below the threshold."""
    pictures = [*validation_pictures(model_folder), str(varied_pictures)]
    warm = app_predictions(model_folder, pictures, Calibration(temperature=2.5))
    confidences = sorted(item["confidence"] for item in warm)
    threshold = (confidences[len(confidences) // 2 - 1] + confidences[len(confidences) // 2]) / 2
    calibration = Calibration(temperature=2.5, threshold=threshold)
    alone = with_metadata(model_folder, tmp_path / "alone.onnx", calibration)
    script = load_script(model_folder / SCRIPT_NAME)

    code, items, _ = run_script(script, capsys, "--model", alone, *pictures, "--json")

    assert code == 0
    assert_same_answers(items, app_predictions(model_folder, pictures, calibration))
    answers = [item["class"] for item in items]
    assert answers.count("unknown") == len(answers) // 2, "the threshold splits these pictures"
    cold = app_predictions(model_folder, pictures, Calibration(temperature=1.0))
    assert all(i["confidence"] < c["confidence"] for i, c in zip(items, cold)), "softened"
    _, items, _ = run_script(
        script, capsys, "--model", alone, *pictures, "--threshold", "0", "--json"
    )
    assert "unknown" not in {i["class"] for i in items}


def with_metadata(folder: Path, destination: Path, calibration: Calibration) -> Path:
    """The folder's model.onnx alone, carrying the class names, preprocessing and this
    calibration in its metadata_props, as the ONNX export writes them."""
    shutil.copyfile(folder / "model.onnx", destination)
    loaded = load_model_folder(folder)
    add_onnx_metadata(destination, dataclasses.replace(loaded, calibration=calibration))
    return destination


def test_a_model_without_metadata_needs_model_json_beside_it(
    model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    proto = onnx.load(str(model_folder / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    script = load_script(model_folder / SCRIPT_NAME)

    pictures = validation_pictures(model_folder)

    code, _, err = run_script(script, capsys, "--model", tmp_path / "bare.onnx", *pictures)

    assert code == 2
    assert err.count("\n") == 1 and "names no classes or preprocessing" in err
    shutil.copy(model_folder / "model.json", tmp_path / "model.json")
    code, items, _ = run_script(
        script, capsys, "--model", tmp_path / "bare.onnx", *pictures, "--json"
    )
    assert code == 0, "model.json beside the file describes it"
    assert_same_answers(items, app_predictions(model_folder, pictures))


@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "nan", "high"])
def test_a_threshold_outside_0_to_1_exits_2_with_one_line(
    model_folder: Path, threshold: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script(model_folder / SCRIPT_NAME)

    with pytest.raises(SystemExit) as exit_:
        script.main([str(model_folder), "--threshold", threshold])

    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a probability from 0 to 1" in err


def test_unreadable_pictures_are_error_items_in_place(
    model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = validation_pictures(model_folder)[:2]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a picture")
    whole = Path(good[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    Image.new("RGB", (8, 40)).save(tmp_path / "thin.png")
    bad = [tmp_path / n for n in ("empty.png", "text.jpg", "cut.png", "thin.png", "gone.png")]
    paths = [good[0], *map(str, bad), good[1]]
    script = load_script(model_folder / SCRIPT_NAME)

    code, items, _ = run_script(script, capsys, *paths, "--json")

    assert code == 0
    assert_same_answers(items, app_predictions(model_folder, paths))
    for item in items[1:-1]:
        assert item["class"] is None and item["confidence"] is None and item["top"] == []
    assert [i["error"] for i in items[1:-1]] == [
        "empty file",
        "not an image",
        "truncated",
        "too small (8x40); needs at least 16 px a side",
        "file disappeared",
    ]
    code, _, _ = run_script(script, capsys, *map(str, bad[:2]), "--json")
    assert code == 2, "nothing could be read: bad input, as the CLI says"


def test_every_onnx_export_can_carry_the_script_and_a_new_copy_replaces_the_old(
    tmp_path: Path,
) -> None:
    (tmp_path / SCRIPT_NAME).write_text("# an older copy\n")

    written = write_predict_script(tmp_path)

    assert written == tmp_path / SCRIPT_NAME
    assert written.read_bytes() == script_source()
    assert written.stat().st_mode & stat.S_IXUSR, "runs as ./predict_onnx.py"
    assert sorted(p.name for p in tmp_path.iterdir()) == [SCRIPT_NAME], "no temporary left"


def test_the_script_needs_nothing_beyond_numpy_pillow_and_onnxruntime() -> None:
    """Read from its source: every import is the standard library's or one of those."""
    import ast

    tree = ast.parse(script_source())
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported - sys.stdlib_module_names == {"numpy", "onnxruntime", "PIL"}


# -- the fresh environment --------------------------------------------------------------


def fresh_venv(base: Path) -> Path:
    """A virtual environment holding only numpy, pillow and onnxruntime (and what they
    need). Kept between test sessions beside pytest's own numbered temporary folders
    (the install takes a while), built again when incomplete; the test checks its
    contents every time. Returns its python."""
    venv = base / f"predict-onnx-venv-py{sys.version_info[0]}{sys.version_info[1]}"
    python = venv / "bin" / "python"
    if not (venv / "installed").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *RUNTIME_PACKAGES],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"pip could not install {RUNTIME_PACKAGES}: {install.stderr[-500:]}")
        (venv / "installed").touch()
    return python


def installed_packages(python: Path) -> set[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {row["name"].lower() for row in json.loads(listing.stdout)}


def requirements_closure(python: Path, names: tuple[str, ...]) -> set[str]:
    """The packages and everything they require, by ``pip show``."""
    found: set[str] = set()
    todo = [n.lower() for n in names]
    while todo:
        shown = subprocess.run(
            [str(python), "-m", "pip", "show", *todo], capture_output=True, text=True, check=True
        )
        found |= set(todo)
        requires = [
            name.strip().lower()
            for line in shown.stdout.splitlines()
            if line.startswith("Requires:")
            for name in line.removeprefix("Requires:").split(",")
            if name.strip()
        ]
        todo = sorted(set(requires) - found)
    return found


@pytest.mark.slow
def test_in_a_fresh_environment_the_script_agrees_with_the_cli(
    model_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path_factory.getbasetemp()
    python = fresh_venv(base.parent if base.parent.name.startswith("pytest-of-") else base)
    installed = installed_packages(python)
    assert installed - {"pip", "setuptools", "wheel"} == requirements_closure(
        python, RUNTIME_PACKAGES
    )
    assert "torch" not in installed and "finetune-studio" not in installed
    pictures = validation_pictures(model_folder)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    ran = subprocess.run(
        [str(python), str(model_folder / SCRIPT_NAME), *pictures, "--json"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=model_folder.parent,
    )
    assert cli_main(["predict", str(model_folder), *pictures, "--json"]) == 0

    assert ran.returncode == 0, ran.stderr
    script_items = json.loads(ran.stdout)
    cli_items = json.loads(capsys.readouterr().out)
    assert [i["class"] for i in script_items] == [i["class"] for i in cli_items]
    assert [i["top"][0]["class"] for i in script_items] == [i["top"][0]["class"] for i in cli_items]
    assert_same_answers(script_items, cli_items)
