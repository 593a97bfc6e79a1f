"""Help > Getting started: a short guide that names only what the window has."""

from __future__ import annotations

import re

import pytest
from PySide6.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QLabel

from finetune_studio.ui.widgets.getting_started import GUIDE


def texts_in(window) -> list[str]:
    """Every caption a user can read or click in the window and its menus."""
    texts = [w.text() for w in window.findChildren(QAbstractButton)]
    texts += [w.text() for w in window.findChildren(QLabel)]
    texts += [w.title() for w in window.findChildren(QGroupBox)]
    for combo in window.findChildren(QComboBox):
        texts += [combo.itemText(i) for i in range(combo.count())]
    for menu in window.menuBar().actions():
        texts += [action.text() for action in menu.menu().actions()]
    return [text.replace("&", "") for text in texts]


# The offscreen platform cannot raise windows or pass size hints; a desktop can.
@pytest.mark.qt_log_ignore("This plugin does not support")
def test_help_getting_started_opens_the_guide_beside_the_window(qtbot, window):
    [help_menu] = [a for a in window.menuBar().actions() if a.text() == "&Help"]
    [action] = [a for a in help_menu.menu().actions() if a.text() == "&Getting started"]

    action.trigger()

    guide = window._guide
    assert guide is not None and guide.isVisible()
    assert not guide.isModal()
    text = guide.browser.toPlainText()
    for heading in ("Data.", "Model.", "Train.", "Results.", "What freezing means"):
        assert heading in text
    assert "When accuracy is low" in text
    action.trigger()  # again: the same guide, not a second one
    assert window._guide is guide


def test_every_control_the_guide_names_exists_in_the_window(window):
    named = [" ".join(name.split()) for name in re.findall(r"<i>([^<]+)</i>", GUIDE)]
    texts = texts_in(window)

    missing = [name for name in named if not any(t.startswith(name) for t in texts)]

    assert len(named) >= 10
    assert missing == []
