"""UI layer: step 3, hyper-parameters, Start and Stop, live curves and the log.

The options themselves are ``train_settings.py``'s; this panel runs them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..resources import action_icon
from .banner import Banner
from .lr_finder import LrFinderDialog
from .progress_value import set_bar_range, set_bar_value
from .train_settings import SettingsScroll, TrainSettings
from .training_plots import TrainingPlots
from .wording import format_duration, plural

if TYPE_CHECKING:
    from ...engine.events import BatchEnd, EpochEnd, FitEnd
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe
    from ..workers.tasks import TaskRunner

LOG_LINES = 5000
# Banner sources (see banner.py): each message is cleared when its cause is gone.
RUN_SOURCE = "run"  # a run failed: cleared by a new run or a change to its inputs
RECIPE_SOURCE = "recipe"  # the settings do not make a valid recipe (set by the window)
FINDING_LR = "Finding the learning rate… Cancel it to train now."


class TrainPanel(QWidget):
    start_requested = Signal()
    stop_requested = Signal()
    run_began = Signal()  # a started run sent its first progress: the old curves are gone
    settings_edited = Signal()  # a value of this step changed: the run's inputs differ
    more_than_head_requested = Signal()  # the note's "train the last block too"
    lr_find_requested = Signal()  # "Find…": the window answers with ``find_lr(recipe, ...)``

    def __init__(self, runner: TaskRunner | None = None, parent: QWidget | None = None) -> None:
        """``runner`` runs the learning-rate finder; without one, Find is not offered."""
        super().__init__(parent)
        self.settings_box = settings = TrainSettings()
        self.lr_finder = LrFinderDialog(runner, self)
        settings.find_lr_button.setVisible(self.lr_finder.available)
        # The options by their names, as the window and the tests know them.
        self.epochs, self.batch_size, self.lr = settings.epochs, settings.batch_size, settings.lr
        self.optimizer, self.schedule = settings.optimizer, settings.schedule
        self.augmentation = settings.augmentation
        self.augmented_copies = settings.augmented_copies
        self.augmentation_note = settings.augmentation_note
        self.device, self.mixed_precision = settings.device, settings.mixed_precision
        self.patience, self.advanced = settings.patience, settings.advanced

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
        settings.edited.connect(self._on_settings_box_edited)
        settings.more_than_head_requested.connect(self.more_than_head_requested)
        settings.lr_find_requested.connect(self._on_settings_box_lr_find_requested)
        self.lr_finder.use_requested.connect(self.lr.setValue)
        self.lr_finder.running_changed.connect(self._on_lr_finder_running_changed)
        self._start_blocker: str | None = None  # the window's reason, see show_start_blocker
        self._started_at = 0.0
        self.run_note = ""  # the first log line of the next run (set by the window)
        # A run clears the previous one's curves and log only once it sends its first
        # progress: a start that fails (no CUDA, a missing file) leaves them as they were.
        self._pending = False
        self.running = False  # a run is going (as far as this panel was told)
        self._early_lines: list[str] = []
        self._previous_progress: tuple[int, str] = (0, "Not started")
        self._run_epochs = 0

    @Slot()
    def _on_settings_box_edited(self) -> None:
        self.run_inputs_changed()
        self.settings_edited.emit()

    # --- recipes and settings: the options' own ------------------------------------------------
    def update_recipe(self, recipe: Recipe) -> Recipe:
        """The recipe with this step's fields replaced, every other field kept."""
        return self.settings_box.update_recipe(recipe)

    def show_recipe(self, recipe: Recipe) -> None:
        self.settings_box.show_recipe(recipe)

    def save_settings(self, settings: QSettings) -> None:
        self.settings_box.save_settings(settings)

    def restore_settings(self, settings: QSettings) -> None:
        self.settings_box.restore_settings(settings)

    def set_available_devices(self, devices: tuple[str, ...]) -> None:
        self.settings_box.set_available_devices(devices)

    def device_missing(self) -> str | None:
        return self.settings_box.device_missing()

    def set_head_only_cached(self, cached: bool | None) -> None:
        self.settings_box.set_head_only_cached(cached)

    def run_inputs_changed(self) -> None:
        """What a run would train on changed: a failed run's message no longer applies."""
        self.banner.clear(RUN_SOURCE)

    def find_lr(self, recipe: Recipe, dataset: DatasetReport | None) -> None:
        """Run the learning-rate finder on ``recipe`` (the window's answer to
        ``lr_find_requested``); refused while a training run is going."""
        self.lr_finder.start(recipe, dataset)

    @Slot()
    def _on_settings_box_lr_find_requested(self) -> None:
        """Find…: ask the window for a search, or show the one going."""
        if self.lr_finder.running:
            self.lr_finder.bring_up()
            return
        self.lr_find_requested.emit()

    @Slot(bool)
    def _on_lr_finder_running_changed(self, running: bool) -> None:
        if not self.stop_button.isEnabled():  # no run going: Start follows the finder
            self.show_start_blocker(self._start_blocker)

    def show_start_blocker(self, reason: str | None) -> None:
        """Enable Start, or disable it and say why beside it (also while the
        learning-rate finder runs, whatever the window says)."""
        self._start_blocker = reason
        if reason is None and self.lr_finder.running:
            reason = FINDING_LR
        self.start_button.setEnabled(reason is None)
        self.start_button.setToolTip(reason or "")
        self.start_reason.setText(reason or "")
        self.start_reason.setVisible(bool(reason))

    # --- run state -------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        """Show a run starting or ended; said twice, the second time changes nothing."""
        if running == self.running:
            return
        self.running = running
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.settings_box.setEnabled(not running)
        self.lr_finder.set_training(running)  # and a search still going stops
        if running:
            self.banner.clear()
            self._pending = True
            self._early_lines = [self.run_note] if self.run_note else []
            self._previous_progress = (self.progress.value(), self.progress.format())
            self._run_epochs = self.epochs.value()
            set_bar_range(self.progress, 0, 1000)
            set_bar_value(self.progress, 0)
            self.progress.setFormat("Starting…")
            self._started_at = time.monotonic()
            self.plots.expect_run(self._run_epochs)

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
        set_bar_value(self.progress, value)
        self.progress.setFormat(text)
        if self._early_lines:
            self.log.appendPlainText("— A new run could not start —")
            for line in self._early_lines:
                self.log.appendPlainText(line)
        self._early_lines = []

    @Slot(list)
    def add_batches(self, events: list[BatchEnd]) -> None:
        self._begin()
        self.plots.set_x_unit(events[-1].unit)
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
        set_bar_value(self.progress, int(done * 1000))
        self.progress.setFormat(
            f"Epoch {last.epoch}/{last.epochs} · batch {last.batch}/{last.batches} · "
            f"about {format_duration(remaining)} left"
        )

    @Slot(str, int, int)
    def show_stage(self, stage: str, done: int, total: int) -> None:
        """Work outside the epochs: decoding, computing cached features, and the
        evaluation after a Stop, which can take a while on a large validation set."""
        self._begin()
        set_bar_value(self.progress, int(self.progress.maximum() * done / max(total, 1)))
        self.progress.setFormat(f"{stage}… {done} of {total}")

    @Slot(object)
    def add_epoch(self, event: EpochEnd) -> None:
        self._begin()
        self.plots.set_x_unit(event.unit)
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
            set_bar_value(self.progress, self.progress.maximum())
            text = f"Done: {epochs} in {elapsed}"
        if event.val_acc is not None:
            text += f" · validation accuracy {event.val_acc:.1%}"
        self.progress.setFormat(text)
