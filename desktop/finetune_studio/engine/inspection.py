"""Engine layer: inspect a dataset folder into a report the user and trainer share.

``inspect_dataset`` scans the folder, opens every picture once (in parallel, with
progress), skips the unusable ones with a plain reason, and splits the rest into
training and validation sets: the split folders if present, else a stratified,
seeded random split. A window replaces or abandons a check when the user picks
another folder or closes it, so a check is cancellable between pictures.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .images import ImageProblem, inspect_image
from .scan import (
    MAX_NAMED,
    FolderScan,
    identical_files_across_classes,
    raise_if_cancelled,
    relative_name,
    scan_folder,
)
from .scan import ScanCancelled as ScanCancelled  # raised by inspect_dataset too

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)``."""
PictureCheck = Callable[[Path], object]
"""Decodes one picture completely, or raises ``ImageProblem`` saying why it cannot."""

PROGRESS_STEPS = 100
"""A check reports progress at most this many times after its start, however many
pictures the folder holds: a window turns each report into a signal, and 10,000
of them would flood its event loop for nothing a progress bar can show."""

QUEUED_PER_WORKER = 4
"""Pictures handed to each checking thread ahead of the one it is opening."""

DEFAULT_VAL_FRACTION = 0.2
IMBALANCE_RATIO_WARNING = 5.0
TINY_CLASS_WARNING = 5


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DatasetReport:
    """Everything known about a dataset folder; plain data only."""

    root: str
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    skipped: tuple[SkippedFile, ...]
    split_source: str  # "folders" or "random"
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())

    def counts(self, samples: Sequence[Sample]) -> list[int]:
        totals = [0] * len(self.classes)
        for sample in samples:
            totals[sample.label] += 1
        return totals

    @property
    def train_counts(self) -> list[int]:
        return self.counts(self.train)

    @property
    def val_counts(self) -> list[int]:
        return self.counts(self.val)

    def require_trainable(self) -> None:
        """Raise ``DatasetError`` with the first problem that rules out training."""
        if self.errors:
            raise DatasetError(self.errors[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "split": self.split_source,
            "classes": [
                {"name": name, "train": t, "val": v}
                for name, t, v in zip(self.classes, self.train_counts, self.val_counts)
            ],
            "train_images": len(self.train),
            "val_images": len(self.val),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


def validate_images(
    paths: Sequence[Path],
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    check_picture: PictureCheck | None = None,
) -> tuple[set[Path], list[SkippedFile]]:
    """Open every picture once, in parallel; return the good ones and the skipped ones.

    ``check_picture`` decodes one picture completely or raises ``ImageProblem``; a
    run's own check also keeps what it decoded (``training.data.PictureKeeper``), so
    the run does not open each picture a second time. By default ``inspect_image``,
    looked up when called (tests replace it).

    Once ``cancel`` is set, pictures not yet started are not opened (the pool's queued
    checks return at once) and ``ScanCancelled`` is raised: only the pictures already
    being opened, one per worker, still finish.
    """

    def check(path: Path) -> str | None:
        if cancel is not None and cancel.is_set():
            return None  # the outcome is thrown away below
        try:
            (check_picture or inspect_image)(path)
        except ImageProblem as problem:
            return str(problem)
        return None

    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    good: set[Path] = set()
    skipped: list[SkippedFile] = []
    total = len(paths)
    step = max(1, total // PROGRESS_STEPS)
    if progress:
        progress(0, total)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for done, (path, reason) in enumerate(_checked(pool, check, paths, workers), start=1):
            raise_if_cancelled(cancel)
            if reason is None:
                good.add(path)
            else:
                skipped.append(SkippedFile(str(path), reason))
            if progress and (done % step == 0 or done == total):
                progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return good, skipped


def _checked(
    pool: ThreadPoolExecutor,
    check: Callable[[Path], str | None],
    paths: Sequence[Path],
    workers: int,
) -> Iterator[tuple[Path, str | None]]:
    """Each path with its check's outcome, in order, with at most a few checks per
    worker queued at once: a queue of every picture (a future each) grew with the
    folder, and a cancel had all of them to drain."""
    queued: deque[tuple[Path, Future[str | None]]] = deque()
    remaining = iter(paths)
    for path in itertools.islice(remaining, QUEUED_PER_WORKER * workers):
        queued.append((path, pool.submit(check, path)))
    while queued:
        path, future = queued.popleft()
        for following in itertools.islice(remaining, 1):
            queued.append((following, pool.submit(check, following)))
        yield path, future.result()


def stratified_split(
    files: dict[str, list[Path]], classes: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Seeded per-class split; every class with 2+ pictures gets 1+ validation picture."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"The validation fraction must be in [0, 1); got {val_fraction}.")
    train: list[Sample] = []
    val: list[Sample] = []
    for label, name in enumerate(classes):
        paths = sorted(files[name])
        random.Random(f"{seed}:{name}").shuffle(paths)
        n_val = round(len(paths) * val_fraction)
        if len(paths) >= 2 and val_fraction > 0:
            n_val = min(max(n_val, 1), len(paths) - 1)
        val += [Sample(str(p), label) for p in paths[:n_val]]
        train += [Sample(str(p), label) for p in paths[n_val:]]
    return train, val


def _problems(
    classes: Sequence[str], train_counts: list[int], val_counts: list[int]
) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    for name, n_train, n_val in zip(classes, train_counts, val_counts):
        if n_train + n_val == 0:
            errors.append(
                f"The class {name!r} has no usable pictures: add some or remove its folder."
            )
        elif n_train == 0:
            errors.append(f"The class {name!r} has no training pictures.")
        elif n_train + n_val < TINY_CLASS_WARNING:
            warnings.append(f"The class {name!r} has only {n_train + n_val} pictures.")
    used = [t + v for t, v in zip(train_counts, val_counts) if t + v > 0]
    if len(used) >= 2 and max(used) > IMBALANCE_RATIO_WARNING * min(used):
        warnings.append(
            f"Classes are imbalanced ({min(used)} to {max(used)} pictures); "
            "consider class-balanced loss weights."
        )
    return errors, warnings


def _identical_across_classes(
    scan: FolderScan, usable: dict[str, list[Path]], cancel: threading.Event | None
) -> list[str]:
    """One warning naming the byte-identical pictures filed under two classes."""
    groups = identical_files_across_classes(usable, cancel)
    if not groups:
        return []
    named = [" and ".join(relative_name(path, scan.root) for _, path in g) for g in groups]
    more = f" and {len(named) - MAX_NAMED} more" if len(named) > MAX_NAMED else ""
    return [
        f"Identical pictures in different classes: {'; '.join(named[:MAX_NAMED])}{more}. "
        "The same picture cannot carry two labels: keep each in one class."
    ]


def inspect_dataset(
    root: str | Path,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    min_classes: int = 2,
    check_picture: PictureCheck | None = None,
) -> DatasetReport:
    """Scan, validate and split a dataset folder. Raises ``DatasetError`` on bad layout
    (fewer than ``min_classes`` classes among them), and its subclass ``ScanCancelled``
    once ``cancel`` is set (checked between folders and between pictures)."""
    scan: FolderScan = scan_folder(root, cancel, min_classes)
    all_paths = [p for files in scan.train_files.values() for p in files]
    if scan.val_files is not None:
        all_paths += [p for files in scan.val_files.values() for p in files]
    paths = list(dict.fromkeys(all_paths))
    good, skipped = validate_images(paths, progress, cancel=cancel, check_picture=check_picture)

    def usable(files: dict[str, list[Path]]) -> dict[str, list[Path]]:
        return {name: [p for p in paths if p in good] for name, paths in files.items()}

    per_class = usable(scan.train_files)
    for name, paths in usable(scan.val_files or {}).items():
        per_class[name] = per_class.get(name, []) + paths
    identical = _identical_across_classes(scan, per_class, cancel)

    if scan.val_files is None:
        train, val = stratified_split(usable(scan.train_files), scan.classes, val_fraction, seed)
        split_source = "random"
    else:
        train_files, val_files = usable(scan.train_files), usable(scan.val_files)
        train = [Sample(str(p), i) for i, c in enumerate(scan.classes) for p in train_files[c]]
        val = [Sample(str(p), i) for i, c in enumerate(scan.classes) for p in val_files[c]]
        split_source = "folders"
    report = DatasetReport(
        root=str(scan.root),
        classes=scan.classes,
        train=tuple(train),
        val=tuple(val),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        split_source=split_source,
    )
    errors, warnings = _problems(scan.classes, report.train_counts, report.val_counts)
    if not report.val:
        warnings.append("No validation pictures: accuracy will be measured on nothing.")
    warnings = scan.notes + identical + warnings
    return replace(report, warnings=tuple(warnings), errors=tuple(errors))
