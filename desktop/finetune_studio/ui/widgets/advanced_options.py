"""UI layer: the Train step's rarely changed options, behind an "Advanced" expander.

The defaults are the recipe's, which work for fine-tuning a pretrained network, so
the expander starts closed. Its title counts the options that differ from those
defaults: a value carried over from a project or an earlier session is never
hidden without a word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from ...engine.recipe import Recipe

OPEN_KEY = "advanced_open"  # in the Train step's settings group
AUTOMATIC_WORKERS = -1  # the spin box's "automatic": the recipe's None

# The recipe's defaults (engine/recipe.py; a test keeps the two in step). The engine
# is imported only once the window shows, so they are repeated here.
DEFAULTS: dict[str, object] = {
    "schedule": "cosine",
    "warmup_fraction": 0.1,
    "weight_decay": 0.01,
    "label_smoothing": 0.1,
    "workers": None,
}

SCHEDULES = {
    "cosine": "Cosine with warm-up",
    "onecycle": "One-cycle",
    "constant": "Constant with warm-up",
}

TIPS = {
    "schedule": (
        "How the learning rate changes during the run. Cosine: rises over the warm-up, "
        "then falls smoothly to zero by the last epoch (a good default). One-cycle: "
        "rises to the learning rate and falls again. Constant: stays at the learning "
        "rate after the warm-up. The Learning rate chart shows the curve."
    ),
    "warmup_fraction": (
        "The share of the run's steps during which the learning rate rises from near "
        "zero. A gentle start keeps the new head's first, random updates from "
        "disturbing the pretrained layers."
    ),
    "weight_decay": (
        "Pulls the weights towards zero a little at every step, which helps against "
        "overfitting on small datasets. Biases and normalisation weights are exempt."
    ),
    "label_smoothing": (
        "Trains towards slightly less than full confidence in the right class, so the "
        "model is less overconfident. 0 turns it off."
    ),
    "workers": (
        "Processes that load and augment pictures while the model trains. Automatic "
        "leaves one core to the window (up to 4). 0 loads pictures in the training "
        "thread: slower, but the simplest when something goes wrong."
    ),
}


def _with_tip(widget: QWidget, tip: str) -> QWidget:
    widget.setToolTip(tip)
    return widget


class AdvancedOptions(QWidget):
    """Owns the recipe's schedule, warm-up, weight decay, label smoothing, workers."""

    edited = Signal()  # a value changed (by the user, a recipe or the settings)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Options that rarely need changing; the defaults work")
        self.schedule = QComboBox()
        for value, label in SCHEDULES.items():
            self.schedule.addItem(label, value)
        self.warmup = QDoubleSpinBox()
        self.warmup.setRange(0.0, 99.0)
        self.warmup.setDecimals(1)
        self.warmup.setSuffix(" % of the steps")
        self.weight_decay = QDoubleSpinBox()
        self.weight_decay.setRange(0.0, 10.0)
        self.weight_decay.setDecimals(4)
        self.weight_decay.setSingleStep(0.005)
        self.label_smoothing = QDoubleSpinBox()
        self.label_smoothing.setRange(0.0, 0.99)
        self.label_smoothing.setDecimals(2)
        self.label_smoothing.setSingleStep(0.05)
        self.workers = QSpinBox()
        self.workers.setRange(AUTOMATIC_WORKERS, 64)
        self.workers.setSpecialValueText("automatic")
        self.defaults_button = QPushButton("Restore defaults")
        self.defaults_button.setToolTip("Set every advanced option back to its default")

        self.body = QWidget()
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        for label, widget, key in (
            ("Schedule", self.schedule, "schedule"),
            ("Warm-up", self.warmup, "warmup_fraction"),
            ("Weight decay", self.weight_decay, "weight_decay"),
            ("Label smoothing", self.label_smoothing, "label_smoothing"),
            ("Data workers", self.workers, "workers"),
        ):
            form.addRow(_with_tip(QLabel(label), TIPS[key]), _with_tip(widget, TIPS[key]))
        form.addRow("", self.defaults_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle, alignment=Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.body)

        self.show_values(DEFAULTS)
        self.set_open(False)
        self.toggle.toggled.connect(self._on_toggle_toggled)
        self.defaults_button.clicked.connect(self._on_defaults_button_clicked)
        for signal in (
            self.schedule.currentIndexChanged,
            self.warmup.valueChanged,
            self.weight_decay.valueChanged,
            self.label_smoothing.valueChanged,
            self.workers.valueChanged,
        ):
            signal.connect(self._on_value_changed)

    # --- values ----------------------------------------------------------------------------
    def fields(self) -> dict[str, object]:
        """The recipe fields these options own, as the widgets show them."""
        workers = self.workers.value()
        return {
            "schedule": self.schedule.currentData(),
            "warmup_fraction": self.warmup.value() / 100,
            "weight_decay": self.weight_decay.value(),
            "label_smoothing": self.label_smoothing.value(),
            "workers": None if workers == AUTOMATIC_WORKERS else workers,
        }

    def show_values(self, values: dict[str, object]) -> None:
        """Show recipe-style values (any subset of ``DEFAULTS``' keys)."""
        if "schedule" in values:
            self.schedule.setCurrentIndex(max(self.schedule.findData(values["schedule"]), 0))
        for key, spin, scale in (
            ("warmup_fraction", self.warmup, 100.0),
            ("weight_decay", self.weight_decay, 1.0),
            ("label_smoothing", self.label_smoothing, 1.0),
        ):
            value = values.get(key)
            if isinstance(value, (int, float)):
                spin.setValue(float(value) * scale)
        if "workers" in values:
            workers = values["workers"]
            self.workers.setValue(workers if isinstance(workers, int) else AUTOMATIC_WORKERS)

    def show_recipe(self, recipe: Recipe) -> None:
        self.show_values({key: getattr(recipe, key) for key in DEFAULTS})

    def changed(self) -> list[str]:
        """The options whose shown value differs from the default."""
        fields = self.fields()
        return [key for key, default in DEFAULTS.items() if not _same(fields[key], default)]

    # --- settings --------------------------------------------------------------------------
    def save_settings(self, settings: QSettings) -> None:
        """Into the caller's group; ``workers`` as -1 for automatic (ini files have no None)."""
        for key, value in self.fields().items():
            settings.setValue(key, AUTOMATIC_WORKERS if value is None else value)
        settings.setValue(OPEN_KEY, self.is_open())

    def restore_settings(self, settings: QSettings) -> None:
        """From the caller's group; raises ValueError/TypeError on values of another kind."""
        values: dict[str, object] = {}
        if settings.contains("schedule"):
            values["schedule"] = settings.value("schedule")
        for key in ("warmup_fraction", "weight_decay", "label_smoothing"):
            if settings.contains(key):
                values[key] = float(str(settings.value(key)))
        if settings.contains("workers"):
            workers = int(str(settings.value("workers")))
            values["workers"] = None if workers < 0 else workers
        self.show_values(values)
        if settings.contains(OPEN_KEY):
            self.set_open(str(settings.value(OPEN_KEY)).lower() == "true")

    # --- the expander ----------------------------------------------------------------------
    def is_open(self) -> bool:
        return self.toggle.isChecked()

    def set_open(self, open_: bool) -> None:
        self.toggle.setChecked(open_)
        self._show_open(open_)

    def _show_open(self, open_: bool) -> None:
        self.body.setVisible(open_)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self._update_title()

    def _update_title(self) -> None:
        changed = len(self.changed())
        suffix = "" if not changed else f" · {changed} changed from the defaults"
        self.toggle.setText(f"Advanced{suffix}")
        self.defaults_button.setEnabled(bool(changed))

    @Slot(bool)
    def _on_toggle_toggled(self, open_: bool) -> None:
        self._show_open(open_)

    @Slot()
    def _on_defaults_button_clicked(self) -> None:
        self.show_values(DEFAULTS)

    @Slot()
    def _on_value_changed(self) -> None:
        self._update_title()
        self.edited.emit()


def _same(shown: object, default: object) -> bool:
    """Equal, allowing for the spin boxes' rounding of floats."""
    if isinstance(shown, float) and isinstance(default, float):
        return abs(shown - default) < 1e-9
    return shown == default
