"""UI layer: the kept runs' wiring between the run keeper, the Runs step and the rest
of the window.

Every run the window trains is kept (``workers/run_keeper.py``): a finished or
stopped one with its model, a failed one as its recipe, epochs and error. The Runs
step lists the current store (beside the project, or the app's folder) in a task,
after each kept run, when the project changes and whenever the step is shown.

"Run again" makes the run's recipe the window's, as opening a project does, and
starts it once the dataset check of that recipe's folder has succeeded. "Open" and
"Export" bring the run back into the Results step (any run, not only the latest),
and Export then asks for a folder as the Results step's own Export button does.
Deleting goes through ``RunStore.delete``, which refuses anything outside the store.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from .widgets.results_panel import STORAGE_SOURCE
from .workers.tasks import ProgressFn

if TYPE_CHECKING:
    from ..engine.inspection import DatasetReport
    from ..engine.recipe import Recipe
    from ..engine.runs import RunListing, RunRecord
    from ..engine.training import TrainingResult
    from .main_window import MainWindow


class RunsListing:
    """A task's function: read every ``run.json`` of a store (never a model)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> RunListing:
        from ..engine.runs import RunStore

        return RunStore(self.root).listing()


class RunsDeletion:
    """A task's function: delete runs of one store; returns the folders removed and
    the messages of those that could not be."""

    def __init__(self, root: Path, records: list[RunRecord]) -> None:
        self.root, self.records = root, records

    def __call__(
        self, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[list[Path], list[str]]:
        from ..engine.runs import RunStore, RunStoreError

        removed, errors = [], []
        for done, record in enumerate(self.records):
            try:
                RunStore(self.root).delete(record.id)  # refuses what is not in the store
                removed.append(record.folder)
            except RunStoreError as error:
                errors.append(str(error))
            progress(done + 1, len(self.records))
        return removed, errors


class RunsLoop(QObject):
    listed = Signal()  # the Runs step shows the store's runs as they are now
    deleted = Signal()  # a deletion has ended (and the list been asked for again)

    def __init__(self, window: MainWindow, runs_tab: int) -> None:
        super().__init__(window)
        self.window = window
        self.runs_tab = runs_tab
        self.view = view = window.runs_view
        self.keeper = keeper = window.keeper
        self._listing = False
        self._list_again = False
        self._run_when_checked: str | None = None  # the folder a Run again waits for
        self._opening: Path | None = None  # a run asked for by the Runs step
        self._export_when_open = False
        view.refresh_requested.connect(self.refresh)
        view.run_again_requested.connect(self._on_run_again_requested)
        view.open_requested.connect(self._on_open_requested)
        view.export_requested.connect(self._on_export_requested)
        view.delete_requested.connect(self._on_delete_requested)
        window.engine_ready.connect(self.refresh)
        window.tabs.currentChanged.connect(self._on_tabs_current_changed)
        window.training.epoch_ended.connect(keeper.note_epoch)
        window.training.run_failed.connect(self._on_training_run_failed)
        window.data_panel.dataset_loaded.connect(self._on_dataset_loaded)
        window.data_panel.loading_changed.connect(self._on_loading_changed)
        keeper.kept.connect(self._on_keeper_kept)
        keeper.keep_failed.connect(self._on_keeper_keep_failed)
        keeper.restored.connect(self._on_keeper_restored)
        keeper.restore_failed.connect(self._on_keeper_restore_failed)
        keeper.restore_ended.connect(self._on_keeper_restore_ended)
        keeper.root_changed.connect(self.refresh)
        window.results_panel.exported.connect(self._on_results_panel_exported)

    # --- the list -------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """List the current store again (once the engine has loaded; one at a time)."""
        if self.window.engine is None:
            return
        if self._listing:
            self._list_again = True
            return
        self._listing = True
        task = self.window.runner.run_function(RunsListing(self.keeper.root), "list runs")
        task.succeeded.connect(self._on_listing_task_succeeded)
        task.failed.connect(self._on_listing_task_failed)

    @Slot(object)
    def _on_listing_task_succeeded(self, listing: RunListing) -> None:
        self.view.show_listing(listing, str(self.keeper.root))
        self._listing_ended()
        self.listed.emit()

    @Slot(str, str)
    def _on_listing_task_failed(self, message: str, details: str) -> None:
        self.view.banner.show_error(f"The runs could not be listed: {message}", details)
        self._listing_ended()

    def _listing_ended(self) -> None:
        self._listing = False
        if self._list_again:
            self._list_again = False
            self.refresh()

    @Slot(int)
    def _on_tabs_current_changed(self, index: int) -> None:
        if index == self.runs_tab:
            self.refresh()  # runs deleted or copied outside the window show as they are

    # --- keeping ----------------------------------------------------------------------------
    @Slot(str, str)
    def _on_training_run_failed(self, message: str, details: str) -> None:
        self.keeper.keep_failure(message)

    @Slot(object)
    def _on_keeper_kept(self, record: RunRecord) -> None:
        self.window.results_panel.banner.clear(STORAGE_SOURCE)
        self.refresh()

    @Slot(str, str)
    def _on_keeper_keep_failed(self, message: str, details: str) -> None:
        self.window.results_panel.banner.show_error(
            f"This run could not be kept: {message} Export the model to keep it.",
            details,
            STORAGE_SOURCE,
        )

    @Slot(str)
    def _on_results_panel_exported(self, folder: str) -> None:
        self.keeper.mark_exported()

    # --- opening and exporting a run --------------------------------------------------------
    @Slot(object)
    def _on_open_requested(self, record: RunRecord) -> None:
        self.open_run(record, export=False)

    @Slot(object)
    def _on_export_requested(self, record: RunRecord) -> None:
        self.open_run(record, export=True)

    def open_run(self, record: RunRecord, export: bool) -> None:
        """Bring ``record`` back into the Results step; with ``export``, then ask where
        to export it (the Results step's own Export path)."""
        window = self.window
        if window.results_panel.exporting:
            self.view.banner.show_warning("An export is being written: open the run after it.")
            return
        if not window.may_replace_unkept_model("Open the run"):
            return
        self._opening, self._export_when_open = record.folder, export
        window.results_panel.set_result(None)
        self.keeper.open_run(record)
        self.view.banner.show_info(f"Opening the run from {_when(record)}…")

    @Slot(object, object)
    def _on_keeper_restored(self, result: TrainingResult, record: RunRecord) -> None:
        window, when = self.window, _when(record)
        asked = self._opening == record.folder
        export = asked and self._export_when_open
        self._opening, self._export_when_open = None, False
        window.results_panel.banner.clear(STORAGE_SOURCE)
        note = (
            f"The run from {when}, opened from the Runs step."
            if asked
            else (f"The last run, from {when}, reopened.")
        )
        window.results_panel.set_result(result, note)
        if asked:
            self.view.banner.clear()
            window.tabs.setCurrentWidget(window.results_panel)
            if export:
                window.results_panel.choose_export_folder()
        else:
            window.statusBar().showMessage(f"Reopened the run from {when} (step 4, Results).", 8000)

    @Slot(str, str)
    def _on_keeper_restore_failed(self, message: str, details: str) -> None:
        asked, self._opening = self._opening is not None, None
        what = "This run" if asked else "The last run"
        banner = self.view.banner if asked else self.window.results_panel.banner
        banner.show_error(f"{what} could not be reopened: {message}", details, STORAGE_SOURCE)

    @Slot()
    def _on_keeper_restore_ended(self) -> None:
        """Also after a discarded opening (a run started meanwhile): a later reopening
        of the same run must not ask where to export it."""
        self._opening, self._export_when_open = None, False

    # --- running again ----------------------------------------------------------------------
    @Slot(object)
    def _on_run_again_requested(self, record: RunRecord) -> None:
        self.run_again(record.recipe)

    def run_again(self, recipe: Recipe) -> None:
        """Make ``recipe`` the window's and train it once its folder is checked."""
        window = self.window
        if window.training.running:
            self.view.banner.show_warning("A run is training: stop it before running another.")
            return
        if not Path(recipe.dataset).expanduser().is_dir():  # the window's folder stays
            self.view.banner.show_error(
                f"Not run again: its dataset folder {recipe.dataset} is no longer there."
            )
            return
        self.view.banner.clear()
        window.show_recipe(recipe)  # checks the recipe's folder with its split
        self._run_when_checked = recipe.dataset

    @Slot(object)
    def _on_dataset_loaded(self, report: DatasetReport) -> None:
        folder, self._run_when_checked = self._run_when_checked, None
        if folder is not None and _same_folder(report.root, folder):
            QTimer.singleShot(0, self._start_run)  # after the window has taken the report

    @Slot()
    def _start_run(self) -> None:
        if not self.window.start_training():  # the Train step says why
            self.window.tabs.setCurrentWidget(self.window.train_panel)

    @Slot(bool)
    def _on_loading_changed(self, loading: bool) -> None:
        """A check that ended without loading drops a waiting Run again: it must not
        start later on whatever folder loads next."""
        if not loading and self._run_when_checked is not None:
            QTimer.singleShot(0, self._drop_waiting_run)  # after dataset_loaded, if any

    @Slot()
    def _drop_waiting_run(self) -> None:
        if self._run_when_checked is not None:
            self._run_when_checked = None
            self.view.banner.show_error(
                "Not run again: the run's dataset folder could not be checked (step 1)."
            )

    # --- deleting ---------------------------------------------------------------------------
    @Slot(list)
    def _on_delete_requested(self, records: list[RunRecord]) -> None:
        task = self.window.runner.run_function(
            RunsDeletion(self.keeper.root, records), "delete runs"
        )
        task.succeeded.connect(self._on_deletion_task_succeeded)
        task.failed.connect(self._on_deletion_task_failed)
        self.view.delete_button.setEnabled(False)

    @Slot(object)
    def _on_deletion_task_succeeded(self, outcome: tuple[list[Path], list[str]]) -> None:
        removed, errors = outcome
        self.keeper.forget_deleted(removed)
        if errors:
            self.view.banner.show_error(" ".join(errors))
        else:
            count = len(removed)
            self.view.banner.show_info(f"Deleted {count} run{'' if count == 1 else 's'}.")
        self.refresh()
        self.deleted.emit()

    @Slot(str, str)
    def _on_deletion_task_failed(self, message: str, details: str) -> None:
        self.view.banner.show_error(f"The runs could not be deleted: {message}", details)
        self.refresh()
        self.deleted.emit()


def _when(record: RunRecord) -> str:
    return record.started.astimezone().strftime("%d %b %Y, %H:%M")


def _same_folder(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
