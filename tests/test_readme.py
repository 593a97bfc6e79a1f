"""The README's Python snippet is real code that works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finetune_studio.cli import main

README = Path(__file__).parents[1] / "README.md"


def test_the_loading_snippet_runs_and_predicts(
    colour_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    # On the CPU whatever the machine has, so the trained model (and the check) is the same.
    argv = ["train", str(colour_dataset), "--out", str(model_dir), "--backbone", "tiny_cnn"]
    assert main([*argv, "--epochs", "1", "--workers", "0", "--device", "cpu"]) == 0
    capsys.readouterr()
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert snippets
    picture = next((colour_dataset / "red").iterdir())
    namespace = {"MODEL_DIR": model_dir, "PICTURE": picture}

    exec(snippets[0], namespace)

    # The snippet leaves its last prediction behind; with three classes "red" is always
    # somewhere in the top three, so the check is that it comes first.
    prediction = namespace["prediction"]
    assert prediction.top[0][0] == "red"
    assert len(prediction.top) == 3
    assert capsys.readouterr().out.startswith(f"{picture} ")
