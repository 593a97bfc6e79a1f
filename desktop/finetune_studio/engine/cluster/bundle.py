"""Engine layer: writing a cluster bundle, as a cancellable task.

The bundle's ``recipe.json`` is the recipe as it is, but for two paths that mean
nothing on the cluster: the dataset becomes the data path on the cluster (``data``
by default: a ``data/`` folder beside ``recipe.json``, which the launch files
``cd`` to), and a weights file, if the recipe names one, is copied to
``weights/`` and named relative to the bundle.

A user's files are never overwritten: a new destination is filled under a
temporary name and moved into place whole (``engine/atomic.py``), so a cancel or
a failure leaves nothing; a folder that is not empty is refused, unless it is an
earlier bundle and ``overwrite`` is asked for, and then only the bundle's own files
are replaced, each atomically: a ``data/`` copy or an ``output/`` folder stays.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import __version__
from ..atomic import write_file_atomically, write_folder_atomically
from ..errors import UserFacingError
from ..events import Log, StageProgress
from ..recipe import Recipe
from ..scan import ScanCancelled, scan_folder
from .launch_files import (
    MANIFEST_JSON,
    README_MD,
    RECIPE_JSON,
    SKYPILOT_YAML,
    SLURM_SBATCH,
    TORCHRUN_SH,
    LaunchCommand,
    LaunchSettings,
    ReadmeFacts,
    copy_command,
    launch_commands,
    readme,
    skypilot_yaml,
    slurm_sbatch,
    torchrun_sh,
)
from .manifest import MANIFEST_FORMAT, Manifest, build_manifest, human_size

BUNDLE_FILES = (RECIPE_JSON, MANIFEST_JSON, TORCHRUN_SH, SLURM_SBATCH, SKYPILOT_YAML, README_MD)
EXECUTABLE = (TORCHRUN_SH, SLURM_SBATCH)
WEIGHTS_FOLDER = "weights"
NAMED_WEIGHTS = ("default", "none")


class BundleError(UserFacingError):
    """The bundle cannot be written where or as asked."""


@dataclass(frozen=True)
class BundleOptions:
    nodes: int = 1
    gpus_per_node: int = 1
    data_path: str = "data"  # the data copy on the cluster; relative: to the bundle
    accelerator: str = "A100"  # SkyPilot's GPU name
    overwrite: bool = False  # replace an earlier bundle's own files

    def check(self, recipe: Recipe) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise BundleError("Nodes and GPUs per node must each be at least 1.")
        if not self.data_path.strip():
            raise BundleError("Give the data path on the cluster (or keep the default, data).")
        if not self.accelerator.strip() or any(c in self.accelerator for c in ":\n\"'"):
            raise BundleError(f"{self.accelerator!r} is not a GPU name (A100, H100, L4, ...).")
        processes = self.nodes * self.gpus_per_node
        if recipe.batch_size % processes:
            raise BundleError(
                f"The batch size {recipe.batch_size} is the global batch, split evenly over "
                f"{processes} processes ({self.nodes} node(s) × {self.gpus_per_node} GPU(s)): "
                f"choose a batch size that is a multiple of {processes}, or other counts."
            )


@dataclass(frozen=True)
class BundleResult:
    folder: str
    files: tuple[str, ...]  # relative to the folder
    pictures: int
    total_bytes: int
    copy_command: str  # rsync of the dataset to where the launch files look for it
    commands: tuple[LaunchCommand, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "files": list(self.files),
            "pictures": self.pictures,
            "bytes": self.total_bytes,
            "copy_command": self.copy_command,
            "commands": [
                {"label": c.label, "command": c.command, "where": c.where} for c in self.commands
            ],
            "notes": list(self.notes),
        }


def check_destination(folder: Path, dataset: Path, overwrite: bool) -> None:
    """Refuse a destination that would overwrite or mix with the user's files."""
    if _inside(folder, dataset):
        raise BundleError(
            f"{folder} is inside the dataset folder {dataset}: the bundle would become "
            "one of its classes. Choose a folder outside it."
        )
    if folder.is_file():
        raise BundleError(f"{folder} is a file: choose a new folder for the bundle.")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise BundleError(
            f"The folder {folder} is not empty: choose a new folder, or allow replacing "
            "an earlier bundle there (--overwrite)."
        )
    if not _is_bundle(folder):
        raise BundleError(
            f"The folder {folder} is not empty and holds no earlier bundle: "
            "choose a new folder (nothing is replaced in a folder of other files)."
        )


def _inside(path: Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _is_bundle(folder: Path) -> bool:
    try:
        data = json.loads((folder / MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT


class ClusterBundle:
    """Writes a bundle for ``recipe`` into ``folder``: a ``CancellableTask``
    (``events()`` returns the ``BundleResult``, or None once cancelled)."""

    def __init__(self, recipe: Recipe, folder: str | Path, options: BundleOptions) -> None:
        self.recipe = recipe
        self.folder = Path(folder).expanduser().absolute()
        self.options = options
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def events(self) -> Generator[StageProgress | Log, None, BundleResult | None]:
        dataset = Path(self.recipe.dataset).expanduser().absolute()
        self.options.check(self.recipe)
        check_destination(self.folder, dataset, self.options.overwrite)
        weights = self._weights_file()
        yield Log(f"Listing the pictures in {dataset}…")
        try:
            scan = scan_folder(dataset, self._cancel)
        except ScanCancelled:
            return None
        manifest = yield from build_manifest(scan, self._cancel)
        if manifest is None:
            return None
        settings = self._settings(manifest)
        texts = self._texts(manifest, settings, dataset, weights)
        yield Log(f"Writing the bundle to {self.folder}…")
        self._write(texts, weights)
        files = sorted(texts) + ([f"{WEIGHTS_FOLDER}/{weights.name}"] if weights else [])
        return BundleResult(
            str(self.folder),
            tuple(files),
            len(manifest.files),
            manifest.total_bytes,
            copy_command(settings, str(dataset)),
            launch_commands(settings, str(self.folder)),
            tuple(self._notes()),
        )

    def _weights_file(self) -> Path | None:
        if self.recipe.weights in NAMED_WEIGHTS:
            return None
        path = Path(self.recipe.weights).expanduser()
        if not path.is_file():
            raise BundleError(f"The recipe's weights file {path} does not exist.")
        return path

    def _settings(self, manifest: Manifest) -> LaunchSettings:
        extra = "[timm]" if self.recipe.backbone.startswith("timm/") else ""
        return LaunchSettings(
            dataset=manifest.dataset,
            nodes=self.options.nodes,
            gpus_per_node=self.options.gpus_per_node,
            data_path=self.options.data_path.strip(),
            accelerator=self.options.accelerator.strip(),
            package=f"finetune-studio{extra}=={__version__}",
        )

    def _texts(
        self, manifest: Manifest, settings: LaunchSettings, dataset: Path, weights: Path | None
    ) -> dict[str, str]:
        changes: dict[str, Any] = {"dataset": settings.data_path}
        extra: tuple[tuple[str, str], ...] = ()
        if weights is not None:
            changes["weights"] = f"{WEIGHTS_FOLDER}/{weights.name}"
            extra = ((changes["weights"], "the recipe's weights file, copied"),)
        recipe = self.recipe.replace(**changes)
        facts = ReadmeFacts(
            source=str(dataset),
            pictures=len(manifest.files),
            size=human_size(manifest.total_bytes),
            recipe_summary=_summary(recipe),
            version=__version__,
            extra_files=extra,
        )
        return {
            RECIPE_JSON: json.dumps(recipe.to_dict(), indent=2) + "\n",
            MANIFEST_JSON: manifest.to_json(),
            TORCHRUN_SH: torchrun_sh(settings),
            SLURM_SBATCH: slurm_sbatch(settings),
            SKYPILOT_YAML: skypilot_yaml(settings),
            README_MD: readme(settings, facts),
        }

    def _write(self, texts: dict[str, str], weights: Path | None) -> None:
        def fill(folder: Path) -> None:
            for name, text in texts.items():
                _write_text(folder / name, text, name in EXECUTABLE)
            if weights is not None:
                (folder / WEIGHTS_FOLDER).mkdir(exist_ok=True)
                shutil.copyfile(weights, folder / WEIGHTS_FOLDER / weights.name)

        if not (self.folder.is_dir() and any(self.folder.iterdir())):
            write_folder_atomically(self.folder, fill)
            return
        for name, text in texts.items():  # an earlier bundle: its own files only
            executable = name in EXECUTABLE
            write_file_atomically(
                self.folder / name,
                lambda tmp, t=text, x=executable: _write_text(tmp, t, x),  # type: ignore[misc]
            )
        if weights is not None:
            (self.folder / WEIGHTS_FOLDER).mkdir(exist_ok=True)
            write_file_atomically(
                self.folder / WEIGHTS_FOLDER / weights.name,
                lambda tmp: shutil.copyfile(weights, tmp),
            )

    def _notes(self) -> list[str]:
        if self.recipe.device in ("cpu", "mps"):
            return [
                f"The recipe trains on device {self.recipe.device!r}: on the cluster it would "
                "not use the GPUs. Choose device auto (or cuda) before making the bundle."
            ]
        return []


def _write_text(path: Path, text: str, executable: bool) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
    if executable:
        mode = path.stat().st_mode
        path.chmod(mode | (mode & 0o444) >> 2)  # executable by whoever may read it


def _summary(recipe: Recipe) -> str:
    plan = recipe.freeze.preset + (" with changes" if recipe.freeze.overrides else "")
    return (
        f"backbone {recipe.backbone}, freeze {plan}, "
        f"{recipe.epochs} epochs, global batch {recipe.batch_size}, lr {recipe.lr:g}"
    )
