"""UI layer: icons and other files installed inside the package."""

from __future__ import annotations

from importlib.resources import as_file, files

from PySide6.QtGui import QIcon

APP_ICON = "finetune-studio.svg"


def app_icon() -> QIcon:
    resource = files("finetune_studio.icons") / APP_ICON
    with as_file(resource) as path:  # a real file even inside a zip or frozen app
        return QIcon(str(path))


def action_icon(name: str) -> QIcon:
    """A small icon for a main action: open-folder, sample, start, stop, export."""
    resource = files("finetune_studio.icons") / "actions" / f"{name}.svg"
    with as_file(resource) as path:
        return QIcon(str(path))
