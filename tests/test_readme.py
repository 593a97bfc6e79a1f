"""The README's Python snippet is real code that works."""

from __future__ import annotations

import re
from pathlib import Path

from finetune_studio.cli import main

README = Path(__file__).parents[1] / "README.md"


def test_the_loading_snippet_runs_and_predicts(
    colour_dataset: Path, tmp_path: Path, capsys
) -> None:
    model_dir = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(colour_dataset),
                "--out",
                str(model_dir),
                "--backbone",
                "tiny_cnn",
                "--epochs",
                "1",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert snippets
    picture = next((colour_dataset / "red").iterdir())

    exec(snippets[0], {"MODEL_DIR": model_dir, "PICTURE": picture})

    printed = capsys.readouterr().out
    assert str(picture) in printed and "red" in printed
