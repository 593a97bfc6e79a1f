"""UI layer: what the window remembers between launches about the work in progress:
the last project or dataset, which the next launch offers to reopen."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

LAST_KIND = "session/last_kind"  # "project" or "dataset"
LAST_PATH = "session/last_path"


def remember_last(settings: QSettings, kind: str, path: str | Path) -> None:
    settings.setValue(LAST_KIND, kind)
    settings.setValue(LAST_PATH, str(Path(path).expanduser().absolute()))


def last_opened(settings: QSettings) -> tuple[str, str] | None:
    """The last project or dataset, while it still exists."""
    kind, path = settings.value(LAST_KIND), settings.value(LAST_PATH)
    if kind not in ("project", "dataset") or not isinstance(path, str) or not path:
        return None
    exists = Path(path).is_file() if kind == "project" else Path(path).is_dir()
    return (str(kind), path) if exists else None
