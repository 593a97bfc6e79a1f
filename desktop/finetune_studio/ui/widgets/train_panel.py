"""UI layer: step 3, hyper-parameters, Start and Stop, live curves and the log.

The options a newcomer meets first are in view, each with a tooltip; the rarely
changed ones sit under an "Advanced" expander (``advanced_options.py``).
"""

from __future__ import annotations

import time
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
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..resources import action_icon
from .advanced_options import AdvancedOptions
from .augmentation_note import AugmentationNote
from .banner import Banner
from .training_plots import TrainingPlots
from .wording import count_suffix, format_duration, plural

if TYPE_CHECKING:
    from ...engine.events import BatchEnd, EpochEnd, FitEnd
    from ...engine.recipe import Recipe

SETTINGS_GROUP = "training"
LOG_LINES = 5000
# Banner sources (see banner.py): each message is cleared when its cause is gone.
RUN_SOURCE = "run"  # a run failed: cleared by a new run or a change to its inputs
RECIPE_SOURCE = "recipe"  # the settings do not make a valid recipe (set by the window)

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


def _tipped(widget: QWidget, key: str) -> QWidget:
    widget.setToolTip(TIPS[key])
    return widget


class TrainPanel(QWidget):
    start_requested = Signal()
    stop_requested = Signal()
    run_began = Signal()  # a started run sent its first progress: the old curves are gone
    settings_edited = Signal()  # a value of this step changed: the run's inputs differ
    more_than_head_requested = Signal()  # the note's "train the last block too"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._shown: dict[str, object] = {}  # widget values right after show_recipe
        self._devices: tuple[str, ...] | None = None  # known once the engine is loaded
        self._cached_head: bool | None = None  # see ``set_head_only_cached``
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
        self.optimizer = _combo({"adamw": "AdamW", "sgd": "SGD with momentum"})
        self.advanced = AdvancedOptions()
        self.schedule = self.advanced.schedule
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
        self.patience = QSpinBox()
        self.patience.setRange(0, 10_000)
        self.patience.setSpecialValueText("off")
        count_suffix(self.patience, "epoch")

        self.settings_box = QGroupBox("Settings")
        self.settings_box.setLayout(self._settings_form())

        self.start_button = QPushButton("Start training")
        # Not setDefault(True): outside a dialog it only changes the look, and Fusion's
        # default-button outline is the colour of its focus ring, hiding the focus.
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.setIcon(action_icon("start"))
        self.stop_button.setIcon(action_icon("stop"))
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        # Why Start is disabled, in words beside it (a tooltip alone goes unseen).
        self.start_reason = QLabel()
        self.start_reason.setWordWrap(True)
        self.start_reason.setObjectName("startReason")
        self.start_reason.hide()

        self.banner = Banner()
        self.progress = QProgressBar()
        self.progress.setFormat("Not started")
        self.progress.setValue(0)
        self.plots = TrainingPlots()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)

        # The settings scroll only when the window is too short for them (Advanced
        # open, the note shown); Start and Stop stay in view right below them.
        self.settings_scroll = SettingsScroll(self.settings_box)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.settings_scroll)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.start_reason)
        left_layout.addStretch(1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.plots)
        right.addWidget(self.log)
        right.setSizes([420, 160])
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setStretchFactor(1, 1)
        body.setSizes([300, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.progress)
        layout.addWidget(body, stretch=1)

        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.augmentation_note.copies_requested.connect(self.augmented_copies.setValue)
        self.augmentation_note.more_than_head_requested.connect(self.more_than_head_requested)
        self._connect_edits()
        self._update_augmentation()
        self._started_at = 0.0
        self.run_note = ""  # the first log line of the next run (set by the window)
        # A run clears the previous one's curves and log only once it sends its first
        # progress: a start that fails (no CUDA, a missing file) leaves them as they were.
        self._pending = False
        self._early_lines: list[str] = []
        self._previous_progress: tuple[int, str] = (0, "Not started")
        self._run_epochs = 0

    def _settings_form(self) -> QFormLayout:
        """The options in view, each with its tooltip on the label too; the
        Augmentation note right below its setting; the Advanced expander last."""
        form = QFormLayout()
        for label, widget, key in (
            ("Epochs", self.epochs, "epochs"),
            ("Batch size", self.batch_size, "batch_size"),
            ("Learning rate", self.lr, "lr"),
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
        self.run_inputs_changed()
        self.settings_edited.emit()

    # --- recipes and settings ------------------------------------------------------------------
    def _fields(self) -> dict[str, object]:
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
        fields = self._fields()
        for name, shown in self._shown.items():
            if fields.get(name) == shown:  # not edited since shown: the recipe's value
                fields[name] = getattr(recipe, name)  # (a widget may round or clamp it)
        if not self._augmenting():
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
        self._shown = self._fields()

    def save_settings(self, settings: QSettings) -> None:
        settings.beginGroup(SETTINGS_GROUP)
        advanced = self.advanced.fields()
        for key, value in self._fields().items():
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

    def _augmenting(self) -> bool:
        return bool(self.augmentation.currentData() != "none")

    def _update_augmentation(self) -> None:
        """Copies only exist of augmented pictures; the note says when none will be."""
        self.augmented_copies.setEnabled(self._augmenting())
        unaugmented = (
            self._cached_head is True and self._augmenting() and self.augmented_copies.value() == 0
        )
        self.augmentation_note.setVisible(unaugmented)

    def set_head_only_cached(self, cached: bool | None) -> None:
        """Whether a run would train only the head on features computed once
        (``engine/cache_decision.py``); None while no network is shown."""
        self._cached_head = cached
        self._update_augmentation()

    def run_inputs_changed(self) -> None:
        """What a run would train on changed: a failed run's message no longer applies."""
        self.banner.clear(RUN_SOURCE)

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

    def show_start_blocker(self, reason: str | None) -> None:
        """Enable Start, or disable it and say why beside it."""
        self.start_button.setEnabled(reason is None)
        self.start_button.setToolTip(reason or "")
        self.start_reason.setText(reason or "")
        self.start_reason.setVisible(bool(reason))

    # --- run state -------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.settings_box.setEnabled(not running)
        if running:
            self.banner.clear()
            self._pending = True
            self._early_lines = [self.run_note] if self.run_note else []
            self._previous_progress = (self.progress.value(), self.progress.format())
            self._run_epochs = self.epochs.value()
            self.progress.setRange(0, 1000)
            self.progress.setValue(0)
            self.progress.setFormat("Starting…")
            self._started_at = time.monotonic()

    def _begin(self) -> None:
        """The run is under way: now its curves and log replace the previous run's."""
        if not self._pending:
            return
        self._pending = False
        self.plots.clear_curves(self._run_epochs)
        self.log.clear()
        for line in self._early_lines:
            self.log.appendPlainText(line)
        self._early_lines = []
        self.run_began.emit()

    def show_failed(self, message: str = "", details: str = "") -> None:
        """A run ended with an error, shown until the next run or a change to what it
        would train on. One that never got going keeps the previous run's curves,
        log and progress; its own log lines are added below."""
        if message:
            self.banner.show_error(message, details, source=RUN_SOURCE)
        if not self._pending:
            self.progress.setFormat("Training failed")
            return
        self._pending = False
        value, text = self._previous_progress
        self.progress.setValue(value)
        self.progress.setFormat(text)
        if self._early_lines:
            self.log.appendPlainText("— A new run could not start —")
            for line in self._early_lines:
                self.log.appendPlainText(line)
        self._early_lines = []

    @Slot(list)
    def add_batches(self, events: list[BatchEnd]) -> None:
        self._begin()
        for event in events:
            self.plots.add_batch(
                event.epoch - 1 + event.batch / event.batches, event.loss, event.lr
            )
        last = events[-1]
        done = ((last.epoch - 1) * last.batches + last.batch) / (last.epochs * last.batches)
        elapsed = time.monotonic() - self._started_at
        remaining = elapsed * (1 - done) / done if done > 0 else 0.0
        if last.unit == "iteration":  # the solver stops when converged, not at a count
            self.progress.setFormat(f"Fitting the head to its optimum · iteration {last.epoch}")
            return
        self.progress.setValue(int(done * 1000))
        self.progress.setFormat(
            f"Epoch {last.epoch}/{last.epochs} · batch {last.batch}/{last.batches} · "
            f"about {format_duration(remaining)} left"
        )

    @Slot(str, int, int)
    def show_stage(self, stage: str, done: int, total: int) -> None:
        """Work outside the epochs: decoding, computing cached features, and the
        evaluation after a Stop, which can take a while on a large validation set."""
        self._begin()
        self.progress.setValue(int(self.progress.maximum() * done / max(total, 1)))
        self.progress.setFormat(f"{stage}… {done} of {total}")

    @Slot(object)
    def add_epoch(self, event: EpochEnd) -> None:
        self._begin()
        self.plots.add_epoch(
            event.epoch, event.train_loss, event.val_loss, event.train_acc, event.val_acc
        )
        val = (
            f"validation loss {event.val_loss:.4f}, accuracy {event.val_acc:.1%}"
            if event.val_loss is not None
            else "no validation pictures"
        )
        best = "  ★ best so far" if event.is_best else ""
        step = (
            f"Iteration {event.epoch}"
            if event.unit == "iteration"
            else f"Epoch {event.epoch}/{event.epochs}"
        )
        self.append_log(
            f"{step}: training loss "
            f"{event.train_loss:.4f}, accuracy {event.train_acc:.1%}; {val} "
            f"({event.seconds:.1f} s){best}"
        )

    @Slot(str, str)
    def append_log(self, message: str, level: str = "info") -> None:
        prefix = "⚠ " if level == "warning" else ""
        if self._pending:
            self._early_lines.append(prefix + message)
        else:
            self.log.appendPlainText(prefix + message)

    def show_finished(self, event: FitEnd) -> None:
        self._begin()
        elapsed = format_duration(time.monotonic() - self._started_at)
        epochs = plural(event.epochs_completed, event.unit)
        if event.cancelled:
            text = f"Stopped after {epochs} ({elapsed})"
        elif event.stopped_early:
            text = f"Stopped early after {epochs} ({elapsed})"
        else:
            self.progress.setValue(self.progress.maximum())
            text = f"Done: {epochs} in {elapsed}"
        if event.val_acc is not None:
            text += f" · validation accuracy {event.val_acc:.1%}"
        self.progress.setFormat(text)
