"""The practice dataset the app draws itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from finetune_studio.engine.errors import DatasetError
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.sample_data import SAMPLE_CLASSES, generate_sample_dataset


def test_the_sample_is_a_valid_varied_dataset(tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []
    folder = generate_sample_dataset(
        tmp_path / "shapes", per_class=6, progress=lambda d, t: progress.append((d, t))
    )

    report = inspect_dataset(folder)
    assert report.classes == tuple(sorted(SAMPLE_CLASSES))
    assert len(report.train) + len(report.val) == 36 and not report.skipped
    assert progress[-1] == (36, 36)
    circles = [np.asarray(Image.open(p), dtype=float) for p in sorted(folder.glob("circle/*"))]
    assert np.abs(circles[0] - circles[1]).mean() > 20  # pictures differ, not copies


def test_a_second_call_reuses_the_sample_and_other_folders_are_refused(tmp_path: Path) -> None:
    folder = generate_sample_dataset(tmp_path / "shapes", per_class=2)
    # Changed by hand: a redraw would put the original back (exact, unlike a timestamp).
    picture = folder / "star" / "star_000.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(picture, format="JPEG")
    edited = picture.read_bytes()
    progress: list[tuple[int, int]] = []

    again = generate_sample_dataset(
        folder, per_class=2, progress=lambda d, t: progress.append((d, t))
    )

    assert again == folder and picture.read_bytes() == edited and progress == []

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    with pytest.raises(DatasetError, match="not empty"):
        generate_sample_dataset(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.docx"]
