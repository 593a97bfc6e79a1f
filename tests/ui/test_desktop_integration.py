"""Installing into the desktop menu, and the app's own self-check."""

from __future__ import annotations

import os
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
