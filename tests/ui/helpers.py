"""Helpers for driving real widgets in tests."""

from __future__ import annotations

import http.server
import io
import threading
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionViewItem, QTreeView, QWidget

from support.tiny import TINY


def drop_paths(target: QWidget, paths: list[Path]) -> None:
    """Deliver a real drag-enter and drop of file URLs to ``target``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = target.rect().center()
    enter = QDragEnterEvent(
        centre,
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(centre),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, drop)


def check_indicator_position(view: QTreeView, index) -> QPoint:
    """Where the check box of ``index`` is drawn in the view's viewport."""
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    option.rect = view.visualRect(index)
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
    rect = view.style().subElementRect(
        QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, view
    )
    return rect.center()


GATE_S = 30
"""A safety net for gates: no test means to wait that long."""


class Gate:
    """Holds a worker thread inside a step until the test releases it: the way to put
    a task exactly where a test needs it, without sleeping or timing."""

    def __init__(self, times: int = 1) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._left = times
        self._lock = threading.Lock()

    def pass_through(self) -> None:
        with self._lock:
            hold = self._left > 0
            self._left -= 1
        if hold:
            self.entered.set()
            self.release.wait(GATE_S)


def load(qtbot, window, folder: Path) -> None:
    """Load a dataset through the window and wait until its preview network is built."""
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        window.data_panel.load_folder(folder)
    qtbot.waitUntil(
        lambda: (
            window.model_panel.ready
            and window.model_panel.num_classes == len(window.data_panel.report.classes)
        ),
        timeout=30_000,
    )


def start_training(qtbot, window, dataset: Path, epochs: int) -> None:
    load(qtbot, window, dataset)
    window.train_panel.epochs.setValue(epochs)
    window.train_panel.batch_size.setValue(4)
    window.train_panel.lr.setValue(0.05)
    qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    assert window.training.running


def open_window(qtbot, settings):
    """A shown window with the engine loaded and the tiny backbone built."""
    from finetune_studio.ui.main_window import MainWindow

    settings.setValue("model/backbone", TINY)
    window = MainWindow(settings)
    # pytest-qt closes the window after a failed test too: never wait on a dialog then.
    window.confirm_stop_training = lambda: True
    window.confirm_quit = lambda lost: "quit"
    window.confirm_replace_model = lambda action: True
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.engine_ready, timeout=60_000):
        window.start_engine()
    qtbot.waitUntil(lambda: window.model_panel.ready, timeout=30_000)
    return window


def copies_of_one_picture(root: Path, classes: int, per_class: int) -> Path:
    """A large dataset quickly: every file holds the same small PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (120, 30, 200)).save(buffer, "PNG")
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True)
        for number in range(per_class):
            (folder / f"picture_{number:04d}.png").write_bytes(buffer.getvalue())
    return root


class GatedWeightsServer:
    """Serves one weights file over HTTP on 127.0.0.1: the first ``head`` bytes at
    once, the rest only after ``gate.release`` (a download a test can hold)."""

    def __init__(self, name: str, content: bytes, head: int) -> None:
        self.gate = Gate(times=1_000)
        gate = self.gate

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                try:
                    self.wfile.write(content[:head])
                    self.wfile.flush()
                    gate.pass_through()
                    self.wfile.write(content[head:])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the download was cancelled

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GatedWeightsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(GATE_S)
