"""Installing into the desktop menu, and the app's own self-check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_studio import desktop_integration


def app(*args: str, data_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_DATA_HOME": str(data_home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "finetune_studio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_install_and_uninstall_the_desktop_entry(tmp_path: Path) -> None:
    data_home = tmp_path / "share"
    (data_home / "applications").mkdir(parents=True)
    (data_home / "applications" / "someone-else.desktop").write_text("[Desktop Entry]\n")

    done = app("--install-desktop-entry", data_home=data_home)

    assert done.returncode == 0, done.stderr
    entry = data_home / "applications" / "finetune-studio.desktop"
    text = entry.read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(" %f") and Path(exec_line[5:-3].split()[0]).is_absolute()
    assert "Icon=finetune-studio" in text
    for size in (16, 48, 256, 512):
        icon = data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "finetune-studio.png"
        assert icon.read_bytes()[:4] == b"\x89PNG"
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True
        )
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout

    done = app("--uninstall-desktop-entry", data_home=data_home)
    assert done.returncode == 0
    assert not any(p.exists() for p in desktop_integration.installed_paths(data_home))
    assert (data_home / "applications" / "someone-else.desktop").exists()
    mime_cache = data_home / "applications" / "mimeinfo.cache"
    if shutil.which("update-desktop-database"):  # folders must no longer open with us
        assert "finetune-studio" not in mime_cache.read_text()


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="appstreamcli not installed")
def test_the_metainfo_is_valid_appstream() -> None:
    from importlib.resources import as_file, files

    resource = files("finetune_studio.resources") / desktop_integration.METAINFO_FILE
    with as_file(resource) as path:
        check = subprocess.run(
            ["appstreamcli", "validate", "--no-net", "--explain", str(path)],
            capture_output=True,
            text=True,
        )
    assert check.returncode == 0, check.stdout


def test_self_check_runs_every_step_offscreen_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    done = app("--self-check", data_home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "worker processes start (spawn)" in done.stdout
    for exported in ("model.safetensors", "model.torchscript.pt", "model.onnx"):
        assert exported in done.stdout
    assert "Self-check passed" in done.stdout
    assert list(tmp_path.iterdir()) == []  # the drawn dataset lived in a temporary folder


def parse_exec(value: str) -> list[str]:
    """The Exec key read as the Desktop Entry Specification says: string escapes first,
    then double-quoted arguments (\\", \\`, \\$, \\\\ inside them), then %% for %."""
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    text = re.sub(r"\\(.)", lambda m: escapes.get(m[1], "\\" + m[1]), value)
    arguments: list[str] = []
    current: str | None = None
    quoted, index = False, 0
    while index < len(text):
        character = text[index]
        if quoted and character == "\\" and text[index + 1 : index + 2] in ('"', "`", "$", "\\"):
            current, index = (current or "") + text[index + 1], index + 2
            continue
        if character == '"':
            quoted, current = not quoted, current or ""
        elif character == " " and not quoted:
            if current is not None:
                arguments.append(current)
            current = None
        else:
            current = (current or "") + character
        index += 1
    assert not quoted, f"unbalanced quotes in {value!r}"
    if current is not None:
        arguments.append(current)
    return [argument.replace("%%", "%") for argument in arguments]


def test_the_exec_line_quotes_an_awkward_path_as_the_spec_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / 'Bob\'s "apps" $HOME `x` 100% back\\slash' / "bin"
    folder.mkdir(parents=True)
    script = folder / "finetune-studio"
    script.write_text("")
    monkeypatch.setattr(sys, "executable", str(folder / "python"))

    exec_value = next(
        line[len("Exec=") :]
        for line in desktop_integration.desktop_entry_text().splitlines()
        if line.startswith("Exec=")
    )

    assert parse_exec(exec_value) == [str(script), "%f"]
    assert exec_value.startswith('"')  # double quotes: the only quoting the spec has


def test_a_plain_path_is_left_unquoted() -> None:
    assert desktop_integration.exec_argument("/usr/bin/finetune-studio") == (
        "/usr/bin/finetune-studio"
    )
