"""One way to write a file the user keeps: whole or not at all, and never shared."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_studio.engine.atomic import write_file_atomically, write_folder_atomically
from finetune_studio.engine.weights import DownloadCancelled, download


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_text("previous")

    def fail(path: Path) -> None:
        path.write_text("half")
        raise OSError("simulated: disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file_atomically(target, fail)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_failed_folder_write_keeps_the_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "export"
    write_folder_atomically(target, lambda folder: (folder / "a.txt").write_text("first"))

    def fail(folder: Path) -> None:
        (folder / "a.txt").write_text("second")
        raise RuntimeError("simulated: the check failed")

    with pytest.raises(RuntimeError):
        write_folder_atomically(target, fail)
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A 3 MiB weights file on a local HTTP server (127.0.0.1): its URL and bytes."""
    content = bytes(range(256)) * (3 * 4096)
    name = f"weights-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    root = tmp_path / "served"
    root.mkdir()
    (root / name).write_bytes(content)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}", content
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_cancelling_one_of_two_downloads_of_a_file_leaves_the_other_whole(
    tmp_path: Path, served: tuple[str, bytes]
) -> None:
    url, content = served
    destination = tmp_path / "hub" / url.rsplit("/", 1)[1]
    kept_started, cancelled_finished = threading.Event(), threading.Event()
    cancel = threading.Event()
    outcome: dict[str, object] = {}

    def cancelled_progress(done: int, total: int) -> None:
        if done:  # one chunk written; cancel once the other download is writing too
            kept_started.wait(10)
            cancel.set()

    def kept_progress(done: int, total: int) -> None:
        kept_started.set()
        if done:  # go on only after the other one has cancelled and cleaned up
            cancelled_finished.wait(10)

    def cancelled_download() -> None:
        try:
            download(url, destination, cancelled_progress, cancel)
        except DownloadCancelled as cancelled:
            outcome["cancelled"] = cancelled
        finally:
            cancelled_finished.set()

    def kept_download() -> None:
        try:
            outcome["kept"] = download(url, destination, kept_progress)
        except Exception as error:
            outcome["kept"] = error

    threads = [threading.Thread(target=cancelled_download), threading.Thread(target=kept_download)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert isinstance(outcome.get("cancelled"), DownloadCancelled)
    assert outcome.get("kept") == destination
    assert destination.read_bytes() == content
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]
