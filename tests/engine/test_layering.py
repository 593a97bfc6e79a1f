"""The engine and the CLI must never import Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import finetune_studio

PACKAGE = Path(finetune_studio.__file__).parent
FORBIDDEN = ("PySide6", "pyqtgraph", "finetune_studio.ui", "shiboken6")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of everything a source file imports, relative imports resolved."""
    package = ["finetune_studio", *path.parent.relative_to(PACKAGE).parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, node.module or ""]).strip("."))
    return names


def test_engine_and_cli_sources_import_nothing_from_qt() -> None:
    sources = [*sorted((PACKAGE / "engine").glob("*.py")), PACKAGE / "cli.py"]
    offenders = {
        f"{path.name}: {name}"
        for path in sources
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders


def test_running_the_cli_loads_no_qt_module(colour_dataset: Path) -> None:
    code = (
        "import sys, finetune_studio.cli as cli\n"
        "import finetune_studio.engine.training, finetune_studio.engine.export\n"
        f"cli.main(['inspect', {str(colour_dataset)!r}, '--json'])\n"
        "loaded = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'shiboken'))]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
