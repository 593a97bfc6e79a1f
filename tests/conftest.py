"""Test set-up shared by the engine and UI suites.

Qt runs offscreen, and is set before anything can import it. The tiny backbone is
registered for every test, so engine tests train in well under a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

import pytest

from support.pictures import make_photo_dataset
from support.tiny import make_colour_dataset, register_tiny, tiny_recipe_for

register_tiny()


@pytest.fixture(autouse=True)
def isolated_torch_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Never read or write the user's real weights, feature caches or kept runs."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))
    return home


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    return make_colour_dataset(tmp_path / "colours")


@pytest.fixture(scope="session")
def photo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photo_dataset(tmp_path_factory.mktemp("photos") / "data", per_class=12)


@pytest.fixture
def tiny_recipe(colour_dataset: Path):
    # Epochs, not the solved head: these tests are about epochs (tests/engine/test_head_fit.py
    # covers the solver); on the CPU, the same run on any machine.
    return tiny_recipe_for(colour_dataset)
