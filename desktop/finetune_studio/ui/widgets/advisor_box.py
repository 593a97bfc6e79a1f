"""UI layer: "How much should I train?" in the Model step.

The box asks the window for the recipe when Measure is pressed (``measure_requested``),
runs the engine's ``Advisor`` as a task with progress and Cancel, shows each plan's
estimated accuracy and time in a table, and offers the recommendation in one click
(``apply_requested``, with a freeze preset such as ``last:2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..workers.event_job import EventsJob
from ..workers.tasks import Task, TaskRunner
from .task_progress import show_stages, show_starting
from .wording import format_duration

if TYPE_CHECKING:
    from ...engine.advice import Advice
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe

BUDGETS_S = (60, 120, 300, 600)
DEFAULT_BUDGET_S = 120
PLAN_WORDS = {
    "head": "The head alone",
    "last:1": "The last block",
    "last:2": "The last two blocks",
    "none": "Everything",
}
COLUMNS = ("Train", "Accuracy", "Time", "Measured")


class AdvisorBox(QGroupBox):
    measure_requested = Signal()
    apply_requested = Signal(str)  # a freeze preset
    running_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("How much should I train?", parent)
        self.runner = runner
        self.task: Task | None = None
        self.advice: Advice | None = None

        self.explanation = QLabel(
            "Measures on a sample of your pictures how accurate the head alone, the last "
            "blocks, or everything would be, and how long each would take to train."
        )
        self.explanation.setWordWrap(True)
        self.budget = QComboBox()
        for seconds in BUDGETS_S:
            self.budget.addItem(f"within {seconds // 60} min", seconds)
        self.budget.setCurrentIndex(BUDGETS_S.index(DEFAULT_BUDGET_S))
        self.budget.setToolTip("Longer measurements use more pictures and more epochs.")
        self.measure_button = QPushButton("Measure")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.progress = QProgressBar()
        self.progress.hide()
        self.table_model = QStandardItemModel(0, len(COLUMNS), self)
        self.table_model.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.hide()
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.apply_button = QPushButton()
        self.apply_button.hide()

        row = QHBoxLayout()
        row.addWidget(self.budget)
        row.addWidget(self.measure_button)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.explanation)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.table)
        verdict_row = QHBoxLayout()
        verdict_row.addWidget(self.verdict, stretch=1)
        verdict_row.addWidget(self.apply_button)
        layout.addLayout(verdict_row)

        self.measure_button.clicked.connect(self.measure_requested)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.apply_button.clicked.connect(self._on_apply_button_clicked)

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    @property
    def budget_s(self) -> float:
        return float(self.budget.currentData())

    def start(self, recipe: Recipe, dataset: DatasetReport | None) -> None:
        """Measure for ``recipe`` (its backbone, weights and training settings)."""
        from ...engine.advice import Advisor
        from ..workers.training import threads_leaving_one_core

        if self.running:
            return
        advisor = Advisor(recipe, dataset, self.budget_s, cpu_threads=threads_leaving_one_core())
        self.advice = None
        self.verdict.setText("")
        self.apply_button.hide()
        self.table.hide()
        self.task = task = self.runner.start(EventsJob(advisor.events, advisor.cancel), "advise")
        task.progressed.connect(self._on_task_progressed)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self._set_running(True)
        show_starting(self.progress)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def reset(self) -> None:
        """Forget the advice (and stop measuring): what it measured has changed."""
        if self.task is not None:
            self.task.discard()
            self.task = None
            self._set_running(False)
        self.advice = None
        self.table.hide()
        self.apply_button.hide()
        self.verdict.setText("")
        self.verdict.setToolTip("")

    def show_unavailable(self, reason: str) -> None:
        """Measure was pressed but nothing can be measured yet."""
        self.verdict.setText(reason)

    def _set_running(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)
        self.budget.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        self.running_changed.emit(running)

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        show_stages(self.progress, self.verdict, events)

    @Slot(object)
    def _on_task_succeeded(self, advice: Advice | None) -> None:
        self.task = None
        self._set_running(False)
        if advice is None:
            self.verdict.setText("Measurement stopped.")
            return
        self.show_advice(advice)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self._set_running(False)
        self.verdict.setText(f"Could not measure: {message}")
        self.verdict.setToolTip(details)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self.task = None
        self._set_running(False)
        self.verdict.setText("Measurement stopped.")

    def show_advice(self, advice: Advice) -> None:
        self.advice = advice
        self.verdict.setToolTip("")
        self.table_model.removeRows(0, self.table_model.rowCount())
        for plan in advice.plans:
            accuracy = (
                "not measured"
                if plan.estimated_accuracy is None
                else f"{plan.estimated_accuracy:.1%}"
            )
            cells = [
                QStandardItem(PLAN_WORDS.get(plan.freeze, plan.freeze)),
                QStandardItem(accuracy),
                QStandardItem(f"~{format_duration(plan.estimated_seconds)}"),
                QStandardItem(plan.note),
            ]
            cells[0].setToolTip(f"Freeze preset {plan.freeze}")
            if plan.freeze == advice.recommended_freeze:
                bold = QFont()
                bold.setBold(True)
                for cell in cells:
                    cell.setFont(bold)
            for cell in cells[1:3]:
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table_model.appendRow(cells)
        self.table.show()
        self.table.setFixedHeight(
            self.table.horizontalHeader().height()
            + sum(self.table.rowHeight(r) for r in range(self.table_model.rowCount()))
            + 2 * self.table.frameWidth()
        )
        words = PLAN_WORDS.get(advice.recommended_freeze, advice.recommended_freeze)
        self.verdict.setText(
            f"Recommended: <b>{words.lower()}</b>, the quickest plan within about a point of "
            f"the best estimate (measured on {advice.sample_train} + {advice.sample_val} "
            "pictures; times are for the whole dataset with your training settings)."
        )
        self.apply_button.setText(f"Use: {words.lower()}")
        self.apply_button.setToolTip("Set the layer tree to this plan")
        self.apply_button.show()

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        self.cancel()
        self.progress.setFormat("Stopping…")

    @Slot()
    def _on_apply_button_clicked(self) -> None:
        if self.advice is not None:
            self.apply_requested.emit(self.advice.recommended_freeze)
