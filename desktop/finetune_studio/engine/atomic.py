"""Engine layer: the one way the engine writes a file or folder the user may keep.

Everything is written under a unique hidden name beside its destination and moved
into place with ``os.replace`` (atomic on one filesystem), so a crash, a full disk or
a cancel leaves either the previous file or the new one, never half of one, and two
writers of the same destination never share a temporary name.

The temporary name is not created here: the writer creates it, with the default
mode (0666 or 0777 less the umask), so the result has the permissions the user
expects without anyone reading or changing the process-wide umask.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def temporary_sibling(destination: Path, tag: str = "partial") -> Path:
    """A fresh hidden name in the destination's folder (same filesystem, so the final
    ``os.replace`` is atomic)."""
    return destination.parent / f".{destination.name}.{tag}-{uuid.uuid4().hex[:12]}"


def write_file_atomically(destination: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` to create the file, then move it onto ``destination``.

    An existing destination is replaced; callers that must not overwrite check first.
    On any failure (an exception, including a cancel) the temporary file is removed
    and the destination is untouched.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(destination)
    try:
        write(temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


def write_folder_atomically(destination: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(folder)`` to fill a new temporary folder, then move it into place.

    An existing destination folder is moved aside first and removed only after the
    new one is in place, so a failure at any point keeps the earlier folder.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(destination)
    try:
        staging.mkdir()
        write(staging)
        if destination.exists():
            backup = temporary_sibling(destination, "old")
            os.replace(destination, backup)
            os.replace(staging, destination)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination
