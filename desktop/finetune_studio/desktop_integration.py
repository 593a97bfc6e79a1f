"""Install the app into the user's desktop menu (freedesktop: Linux, BSD).

``finetune-studio --install-desktop-entry`` writes the desktop entry, the AppStream
metainfo and the icons under ``$XDG_DATA_HOME`` (usually ~/.local/share), with
``Exec`` pointing at this installation; ``--uninstall-desktop-entry`` removes
exactly those files. Qt-free, so it also works without a display.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

APP_ID = "finetune-studio"
DESKTOP_FILE = f"{APP_ID}.desktop"
METAINFO_FILE = "io.github.finetune_studio.FinetuneStudio.metainfo.xml"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


# The Desktop Entry Specification's reserved characters (section "The Exec key").
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#`()")
_STRING_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def exec_argument(argument: str) -> str:
    """One argument of the ``Exec`` key, quoted as the Desktop Entry Specification says.

    The spec quotes with double quotes only (a single quote is a reserved character,
    not a quote, so shell-style single quoting starts the wrong program). Inside
    them a backslash goes before ``"``, backtick, ``$`` and backslash; ``%`` is
    doubled (field codes). The value is then escaped as any desktop-entry string,
    which doubles every backslash again: the spec writes a quoted literal ``$`` as
    two backslashes and a ``$``.
    """
    quoted = argument
    if not argument or _EXEC_RESERVED & set(argument):
        quoted = '"' + re.sub(r'(["`$\\])', r"\\\1", argument) + '"'
    quoted = quoted.replace("%", "%%")
    return "".join(_STRING_ESCAPES.get(character, character) for character in quoted)


def launcher_command() -> str:
    """How the menu should start this installation (the gui script beside Python)."""
    script = Path(sys.executable).parent / APP_ID
    if script.exists():
        return exec_argument(str(script))
    return f"{exec_argument(sys.executable)} -m finetune_studio"


def installed_paths(root: Path | None = None) -> list[Path]:
    root = root or data_home()
    icons = root / "icons" / "hicolor"
    return [
        root / "applications" / DESKTOP_FILE,
        root / "metainfo" / METAINFO_FILE,
        icons / "scalable" / "apps" / f"{APP_ID}.svg",
        *(icons / f"{size}x{size}" / "apps" / f"{APP_ID}.png" for size in ICON_SIZES),
    ]


def desktop_entry_text() -> str:
    template = (files("finetune_studio.resources") / DESKTOP_FILE).read_text(encoding="utf-8")
    lines = [
        f"Exec={launcher_command()} %f" if line.startswith("Exec=") else line
        for line in template.splitlines()
    ]
    return "\n".join(lines) + "\n"


def install(root: Path | None = None) -> list[Path]:
    """Write the entry, metainfo and icons; returns the files written."""
    root = root or data_home()
    entry, metainfo, svg, *pngs = installed_paths(root)
    icons = files("finetune_studio.icons")
    contents: list[tuple[Path, bytes]] = [
        (entry, desktop_entry_text().encode("utf-8")),
        (metainfo, (files("finetune_studio.resources") / METAINFO_FILE).read_bytes()),
        (svg, (icons / f"{APP_ID}.svg").read_bytes()),
        *(
            (png, (icons / f"{APP_ID}-{size}.png").read_bytes())
            for png, size in zip(pngs, ICON_SIZES)
        ),
    ]
    written = []
    for target, content in contents:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        written.append(target)
    _refresh_menu_cache(entry.parent)
    return written


def uninstall(root: Path | None = None) -> list[Path]:
    """Remove what ``install`` wrote (and nothing else); returns the files removed."""
    paths = installed_paths(root)
    removed = []
    for path in paths:
        if path.is_file():
            path.unlink()
            removed.append(path)
    if paths[0] in removed:  # the desktop entry
        _refresh_menu_cache(paths[0].parent)
    return removed


def _refresh_menu_cache(applications: Path) -> None:
    """Where the desktop keeps a cache of which entries open which types (folders, for
    us), rebuild it, so it neither misses nor keeps our entry."""
    if shutil.which("update-desktop-database"):
        subprocess.run(["update-desktop-database", "-q", str(applications)], check=False)
