"""The GUI entry point and the PySide6 release it runs on."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    ticked = Signal(int, bool)


def test_thousands_of_signal_emits_do_not_abort_python(qtbot) -> None:
    # PySide6 6.12.0 on CPython 3.11 leaks a reference to True per emit and aborts
    # after a few hundred (bool_dealloc); pyproject excludes that release.
    emitter = _Emitter()
    received: list[int] = []
    emitter.ticked.connect(lambda value, flag: received.append(value))
    for i in range(5000):
        emitter.ticked.emit(i, True)
    assert len(received) == 5000


def test_the_window_opens_with_the_app_name(qtbot) -> None:
    from finetune_studio.ui.app import create_window

    window = create_window()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle().startswith("Finetune Studio")
