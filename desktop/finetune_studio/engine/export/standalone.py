"""Engine layer: the standalone prediction script that goes beside every ONNX export.

``predict_onnx.py`` lets a model folder be used where the app is not installed: it
needs only numpy, pillow and onnxruntime, and repeats the app's reading of a picture,
its preprocessing and its calibrated probabilities. Its source lives in
``scripts/predict_onnx.py`` (a folder without ``__init__.py``: nothing in the app
imports it; pyproject.toml lists it among the packages so wheels carry it) and is
copied, not generated, so what runs beside the model is exactly the file that ruff,
mypy and the tests check.
"""

from __future__ import annotations

import os
import stat
from importlib import resources
from pathlib import Path

from ..atomic import write_file_atomically

SCRIPT_NAME = "predict_onnx.py"


def script_source() -> bytes:
    """The script's text as shipped with this installation."""
    package = __name__.rpartition(".")[0]
    return (resources.files(package) / "scripts" / SCRIPT_NAME).read_bytes()


def write_predict_script(folder: Path) -> Path:
    """Write ``predict_onnx.py`` into ``folder`` (the exported model's folder), atomically.

    The file is our own output in our model folder, so a previous copy, of this
    version or another, is replaced: the script always matches the app that made the
    model. It is executable by whoever may read it (it starts with ``#!``). Disk
    errors propagate as ``OSError``; the caller words them.
    """
    source = script_source()

    def write(path: Path) -> None:
        path.write_bytes(source)
        mode = os.stat(path).st_mode
        readable = mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(path, mode | readable >> 2)  # r bits shifted onto x bits

    return write_file_atomically(Path(folder) / SCRIPT_NAME, write)
