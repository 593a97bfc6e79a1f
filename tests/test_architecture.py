"""Who may know what: the engine and the CLI never reach Qt or the UI.

The rules live as import-linter contracts in pyproject.toml ([tool.importlinter]);
these tests run them in `make test`, show that they do catch a forbidden import
(a contract that cannot fail proves nothing), and check at run time what a static
import graph cannot see.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import finetune_studio

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = Path(finetune_studio.__file__).resolve().parent
# `lint-imports`, run by the interpreter running the suite (the `test` extra installs it
# there), so it sees the same finetune_studio; the same call on Windows, with no .exe.
LINT_IMPORTS = (
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; "
    "sys.exit(lint_imports_command())",
)
QT_FAMILY = ("PySide6", "shiboken6", "pyqtgraph", "superqt")

ENGINE_RULE = "finetune_studio.engine is not allowed to import {}"
CLI_RULE = "finetune_studio.cli is not allowed to import {}"


def lint_imports(package_parent: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the project's contracts; against a copy of the package when one is given.

    ``--no-cache`` so that a copy is never judged by a graph cached for the real tree.
    """
    env = dict(os.environ)
    if package_parent is not None:
        # PYTHONPATH is searched before the editable install's finder, so the copy wins.
        env["PYTHONPATH"] = str(package_parent)
    return subprocess.run(
        [*LINT_IMPORTS, "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=package_parent or ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def broken_rules(output: str) -> set[str]:
    """The "X is not allowed to import Y" lines of lint-imports' report."""
    return set(re.findall(r"^(\S+ is not allowed to import \S+):$", output, re.MULTILINE))


def test_the_import_contracts_hold() -> None:
    assert importlib.util.find_spec("importlinter"), "missing: pip install -e '.[test]'"
    done = lint_imports()
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Contracts: 2 kept, 0 broken." in report, report


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A throwaway copy of finetune_studio to break on purpose; returns its parent."""
    shutil.copytree(
        PACKAGE, tmp_path / "finetune_studio", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def add_engine_module(parent: Path, source: str) -> None:
    (parent / "finetune_studio" / "engine" / "_forbidden_probe.py").write_text(
        source, encoding="utf-8"
    )


def add_cli_function(parent: Path, body: str) -> None:
    cli = parent / "finetune_studio" / "cli" / "__init__.py"
    cli.write_text(
        cli.read_text(encoding="utf-8") + f"\n\ndef _forbidden_probe() -> None:\n    {body}\n",
        encoding="utf-8",
    )


LAZY_ENGINE_IMPORTS = {
    "PySide6": "from PySide6.QtCore import QObject",
    "shiboken6": "import shiboken6",
    "pyqtgraph": "import pyqtgraph as pg",
    "superqt": "from superqt.utils import thread_worker",
    "finetune_studio.ui": "from ..ui import app",
}


@pytest.mark.parametrize("forbidden", sorted(LAZY_ENGINE_IMPORTS))
def test_an_engine_import_inside_a_function_breaks_the_contract(
    package_copy: Path, forbidden: str
) -> None:
    # Imports in this codebase are mostly lazy, inside functions: they must count too.
    statement = LAZY_ENGINE_IMPORTS[forbidden]
    add_engine_module(package_copy, f"def load() -> None:\n    {statement}\n")
    done = lint_imports(package_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ENGINE_RULE.format(forbidden) in broken_rules(done.stdout), done.stdout
    assert f"finetune_studio.engine._forbidden_probe -> {forbidden}" in done.stdout


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("from ..ui import app", "finetune_studio.ui"),
        ("import PySide6.QtWidgets", "PySide6"),
        ("import pyqtgraph", "pyqtgraph"),
    ],
)
def test_a_cli_import_of_the_ui_or_qt_breaks_the_contract(
    package_copy: Path, statement: str, forbidden: str
) -> None:
    add_cli_function(package_copy, statement)
    done = lint_imports(package_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert CLI_RULE.format(forbidden) in broken_rules(done.stdout), done.stdout


def test_the_cli_reaching_qt_through_the_engine_breaks_both_contracts(package_copy: Path) -> None:
    add_engine_module(package_copy, "import PySide6\n")
    add_cli_function(package_copy, "from ..engine import _forbidden_probe")
    done = lint_imports(package_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert {ENGINE_RULE.format("PySide6"), CLI_RULE.format("PySide6")} <= broken_rules(
        done.stdout
    ), done.stdout


def test_running_the_cli_and_every_engine_module_loads_no_qt(colour_dataset: Path) -> None:
    """What the static contracts cannot see: importlib by name, and third-party
    libraries the engine imports that would pull in Qt themselves."""
    engine = [
        info.name
        for info in pkgutil.walk_packages(
            [str(PACKAGE / "engine")], prefix="finetune_studio.engine."
        )
    ]
    code = (
        "import importlib, sys\n"
        "import finetune_studio.cli as cli\n"
        f"for name in {engine!r}:\n"
        "    importlib.import_module(name)\n"
        f"code = cli.main(['inspect', {str(colour_dataset)!r}, '--json'])\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({QT_FAMILY!r}))\n"
        "assert code == 0 and not loaded, (code, loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
