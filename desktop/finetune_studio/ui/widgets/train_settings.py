"""UI layer: the Train step's options, each with a tooltip.

The options a newcomer meets first are in view; the rarely changed ones sit under
an "Advanced" expander (``advanced_options.py``); beside Augmentation, a note says
when a head-only run will not augment its pictures (``augmentation_note.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSettings, QSize, Qt, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from .advanced_options import AdvancedOptions
from .augmentation_note import AugmentationNote
from .wording import count_suffix

if TYPE_CHECKING:
    from ...engine.recipe import Recipe

SETTINGS_GROUP = "training"

TIPS = {
    "epochs": (
        "How many times training goes through every training picture. Early "
        "stopping can end the run sooner."
    ),
    "batch_size": (
        "Pictures per training step. Larger batches need more memory: if a run "
        "runs out of memory, lower this."
    ),
    "lr": (
        "How large each update to the weights is. Too high and the loss jumps about "
        "or grows; too low and it falls slowly. 0.001 suits AdamW when fine-tuning."
    ),
    "find_lr": (
        "Try learning rates from very small to very large for up to 100 steps on this "
        "recipe's run, and suggest one. The model is put back as it was."
    ),
    "optimizer": (
        "How the weights are updated. AdamW adapts each weight's step and works well "
        "with the default learning rate; SGD with momentum usually wants a higher one."
    ),
    "augmentation": (
        "Random changes to the training pictures each time they are used, so the "
        "model learns the subject rather than the exact pictures. Light: random crop "
        "and flip. Standard: also random scale and colour. Validation pictures are "
        "never changed."
    ),
    "device": (
        "Where training runs. Automatic uses a GPU when this computer has one, otherwise the CPU."
    ),
    "early_stopping_patience": (
        "Stop once the validation loss has not improved for this many epochs; the "
        "best model so far is kept. Off: train for every epoch."
    ),
}


def _combo(items: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    for value, label in items.items():
        combo.addItem(label, value)
    return combo


def _tipped(widget: QWidget, key: str) -> QWidget:
    widget.setToolTip(TIPS[key])
    return widget


class TrainSettings(QGroupBox):
    """Owns the recipe's training fields (every one but the freeze plan's)."""

    edited = Signal()  # a value changed (by the user, a recipe or the settings)
    lr_find_requested = Signal()  # "Find…" beside the learning rate
    more_than_head_requested = Signal()  # the note's "train the last block too"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self._shown: dict[str, object] = {}  # widget values right after show_recipe
        self._devices: tuple[str, ...] | None = None  # known once the engine is loaded
        self._cached_head: bool | None = None  # see ``set_head_only_cached``
        self._make_run_widgets()
        self._make_picture_widgets()
        self.setLayout(self._form())
        self.augmentation_note.copies_requested.connect(self.augmented_copies.setValue)
        self.augmentation_note.more_than_head_requested.connect(self.more_than_head_requested)
        self._connect_edits()
        self._update_augmentation()

    def _make_run_widgets(self) -> None:
        """How long and how fast the run learns."""
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100_000)
        self.epochs.setValue(10)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        self.batch_size.setValue(32)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.find_lr_button = QPushButton("Find…")
        self.find_lr_button.setAccessibleName("Find learning rate")
        self.find_lr_button.setToolTip(TIPS["find_lr"])
        self.find_lr_button.clicked.connect(self.lr_find_requested)
        self.optimizer = _combo({"adamw": "AdamW", "sgd": "SGD with momentum"})
        self.patience = QSpinBox()
        self.patience.setRange(0, 10_000)
        self.patience.setSpecialValueText("off")
        count_suffix(self.patience, "epoch")
        self.advanced = AdvancedOptions()
        self.schedule = self.advanced.schedule

    def _make_picture_widgets(self) -> None:
        """What the pictures go through, and where."""
        self.augmentation = _combo(
            {
                "light": "Light (crop, flip)",
                "standard": "Standard (+ scale, colour)",
                "none": "None",
            }
        )
        # Head-only runs train on features computed once per picture; each augmented
        # copy computes them once more from an augmented picture (recipe cached_views).
        self.augmented_copies = QSpinBox()
        self.augmented_copies.setRange(0, 63)  # the recipe allows 64 views
        self.augmented_copies.setSpecialValueText("none (fastest)")
        self.augmented_copies.setToolTip(
            "When only the head trains, each picture goes through the network once and "
            "the head trains on the result. Each augmented copy adds one more pass over "
            "the pictures, augmented as chosen above, so the head sees more variety. "
            "When more layers train, augmentation applies every epoch instead."
        )
        self.augmentation_note = AugmentationNote()
        self.device = _combo(
            {
                "auto": "Automatic (GPU if available)",
                "cpu": "CPU",
                "cuda": "NVIDIA GPU (CUDA)",
                "mps": "Apple GPU (MPS)",
            }
        )
        self.mixed_precision = QCheckBox("Mixed precision where it is faster")
        self.mixed_precision.setToolTip(
            "NVIDIA GPUs compute in bfloat16 (or float16); CPUs with native bfloat16 "
            "(AVX-512 BF16, AMX) in bfloat16. Elsewhere training stays in float32. "
            "The log says which was used."
        )
        self.mixed_precision.setChecked(True)

    def _form(self) -> QFormLayout:
        """The options in view, each with its tooltip on the label too; the
        Augmentation note right below its setting; the Advanced expander last."""
        form = QFormLayout()
        lr_row = QWidget()
        lr_layout = QHBoxLayout(lr_row)
        lr_layout.setContentsMargins(0, 0, 0, 0)
        lr_layout.addWidget(_tipped(self.lr, "lr"), stretch=1)
        lr_layout.addWidget(self.find_lr_button)
        for label, widget, key in (
            ("Epochs", self.epochs, "epochs"),
            ("Batch size", self.batch_size, "batch_size"),
            ("Learning rate", lr_row, "lr"),
            ("Optimizer", self.optimizer, "optimizer"),
            ("Augmentation", self.augmentation, "augmentation"),
        ):
            form.addRow(_tipped(QLabel(label), key), _tipped(widget, key))
        copies = QLabel("Augmented copies")
        copies.setToolTip(self.augmented_copies.toolTip())
        form.addRow(copies, self.augmented_copies)
        form.addRow(self.augmentation_note)
        form.addRow(_tipped(QLabel("Device"), "device"), _tipped(self.device, "device"))
        form.addRow("", self.mixed_precision)
        patience = "early_stopping_patience"
        form.addRow(_tipped(QLabel("Early stopping"), patience), _tipped(self.patience, patience))
        form.addRow(self.advanced)
        return form

    def _connect_edits(self) -> None:
        for signal in (
            self.epochs.valueChanged,
            self.batch_size.valueChanged,
            self.lr.valueChanged,
            self.optimizer.currentIndexChanged,
            self.augmentation.currentIndexChanged,
            self.augmented_copies.valueChanged,
            self.device.currentIndexChanged,
            self.mixed_precision.toggled,
            self.patience.valueChanged,
            self.advanced.edited,
        ):
            signal.connect(self._on_setting_edited)

    @Slot()
    def _on_setting_edited(self) -> None:
        self._update_augmentation()
        self.edited.emit()

    # --- recipes and settings ------------------------------------------------------------------
    def fields(self) -> dict[str, object]:
        """The recipe fields this step owns, as its widgets show them."""
        return {
            "epochs": self.epochs.value(),
            "batch_size": self.batch_size.value(),
            "lr": self.lr.value(),
            "optimizer": self.optimizer.currentData(),
            "augmentation": self.augmentation.currentData(),
            "cached_views": 1 + self.augmented_copies.value(),
            "device": self.device.currentData(),
            "mixed_precision": self.mixed_precision.isChecked(),
            "early_stopping_patience": self.patience.value(),
            **self.advanced.fields(),
        }

    def update_recipe(self, recipe: Recipe) -> Recipe:
        """The recipe with this step's fields replaced, every other field kept.
        Without augmentation the copies box is disabled: the recipe's
        ``cached_views`` is then kept as it is rather than read from it."""
        fields = self.fields()
        for name, shown in self._shown.items():
            if fields.get(name) == shown:  # not edited since shown: the recipe's value
                fields[name] = getattr(recipe, name)  # (a widget may round or clamp it)
        if not self.augmenting():
            fields["cached_views"] = recipe.cached_views
        return recipe.replace(**fields)

    def show_recipe(self, recipe: Recipe) -> None:
        self.epochs.setValue(recipe.epochs)
        self.batch_size.setValue(recipe.batch_size)
        self.lr.setValue(recipe.lr)
        for combo, value in (
            (self.optimizer, recipe.optimizer),
            (self.augmentation, recipe.augmentation),
            (self.device, recipe.device),
        ):
            combo.setCurrentIndex(max(combo.findData(value), 0))
        self.mixed_precision.setChecked(recipe.mixed_precision)
        self.patience.setValue(recipe.early_stopping_patience)
        self.augmented_copies.setValue(recipe.cached_views - 1)
        self.advanced.show_recipe(recipe)
        self._shown = self.fields()

    def save_settings(self, settings: QSettings) -> None:
        settings.beginGroup(SETTINGS_GROUP)
        advanced = self.advanced.fields()
        for key, value in self.fields().items():
            if key not in advanced:
                settings.setValue(key, value)
        self.advanced.save_settings(settings)
        settings.endGroup()

    def restore_settings(self, settings: QSettings) -> None:
        settings.beginGroup(SETTINGS_GROUP)
        try:
            spins = {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "early_stopping_patience": self.patience,
            }
            for key, spin in spins.items():
                if settings.contains(key):
                    spin.setValue(int(settings.value(key)))
            if settings.contains("lr"):
                self.lr.setValue(float(settings.value("lr")))
            if settings.contains("cached_views"):
                views = int(settings.value("cached_views"))
                self.augmented_copies.setValue(views - 1)
            combos = {
                "optimizer": self.optimizer,
                "augmentation": self.augmentation,
                "device": self.device,
            }
            for key, combo in combos.items():
                index = combo.findData(settings.value(key))
                if index >= 0:
                    combo.setCurrentIndex(index)
            if settings.contains("mixed_precision"):
                self.mixed_precision.setChecked(
                    str(settings.value("mixed_precision")).lower() == "true"
                )
            self.advanced.restore_settings(settings)
        except (TypeError, ValueError):
            pass  # settings from another version: keep the defaults
        finally:
            settings.endGroup()

    def augmenting(self) -> bool:
        return bool(self.augmentation.currentData() != "none")

    def _update_augmentation(self) -> None:
        """Copies only exist of augmented pictures; the note says when none will be."""
        self.augmented_copies.setEnabled(self.augmenting())
        unaugmented = (
            self._cached_head is True and self.augmenting() and self.augmented_copies.value() == 0
        )
        self.augmentation_note.setVisible(unaugmented)

    def set_head_only_cached(self, cached: bool | None) -> None:
        """Whether a run would train only the head on features computed once
        (``engine/cache_decision.py``); None while no network is shown."""
        self._cached_head = cached
        self._update_augmentation()

    def set_available_devices(self, devices: tuple[str, ...]) -> None:
        """Grey out the forced devices this machine lacks (``auto`` always works)."""
        model = self.device.model()
        if not isinstance(model, QStandardItemModel):
            return
        for row in range(self.device.count()):
            value = self.device.itemData(row)
            item = model.item(row)
            present = value == "auto" or value in devices
            item.setEnabled(present)
            item.setToolTip("" if present else "Not present on this computer")
        self._devices = devices

    def device_missing(self) -> str | None:
        """The chosen device in words when this machine does not have it."""
        value = self.device.currentData()
        devices = self._devices
        if devices is None or value == "auto" or value in devices:
            return None
        return str(self.device.currentText())


class SettingsScroll(QScrollArea):
    """A scroll area that asks for its page's whole size, so it scrolls only when the
    window cannot give that (QScrollArea's own size hint stops at 24 lines of text,
    and it asks for no width, so a splitter would cut the page's right edge off)."""

    def __init__(self, page: QWidget) -> None:
        super().__init__()
        self.setWidget(page)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        page.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The page grew or shrank (the note, Advanced): ask the layout again."""
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def _bar(self) -> int:
        return int(self.verticalScrollBar().sizeHint().width())

    def sizeHint(self) -> QSize:
        page = self.widget()
        hint = page.sizeHint() if page is not None else QSize()
        return QSize(hint.width() + self._bar(), hint.height())

    def minimumSizeHint(self) -> QSize:
        page = self.widget()
        width = page.minimumSizeHint().width() if page is not None else 0
        return QSize(width + self._bar(), super().minimumSizeHint().height())
