"""UI layer: step 2, pick a backbone and decide which layers train.

This panel owns the recipe's backbone and weights, and builds a preview copy of
the network in a task (downloading the weights first if needed, with progress and
Cancel); the ``LayerEditor`` beside it owns the freeze plan and its options. A tab
beside the layers compares backbones on the user's pictures (``CompareView``); its
"Use this backbone" chooses one here.

Its messages are tied to their causes: a failed load (``NETWORK_SOURCE``) lasts
until another build starts, and a plan that did not fit (``PLAN_SOURCE``) until the
user chooses what trains or another network is built.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..models.backbone_model import NAME_ROLE, BackboneFilter, build_backbone_model
from ..workers.tasks import Progress, ProgressFn, Task, TaskRunner
from .advisor_box import AdvisorBox
from .banner import Banner
from .compare_view import CompareView
from .layer_editor import LayerEditor

if TYPE_CHECKING:
    from ...engine.backbones import BackboneInfo, BuiltModel
    from ...engine.recipe import Recipe

PLACEHOLDER_CLASSES = 2  # the head's size until a dataset is loaded
WEIGHT_CHOICES = ("default", "none", "file")
NETWORK_SOURCE = "network"  # the banner's message about loading the network
PLAN_SOURCE = "plan"  # the banner's message about a plan that did not fit
NO_NETWORK = "No network loaded (see step 2): choose a backbone that loads."


class NetworkBuild:
    """``build_model`` as a task's function: downloads report their bytes."""

    def __init__(self, name: str, classes: int, weights: str) -> None:
        self.name, self.classes, self.weights = name, classes, weights

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> BuiltModel:
        from ...engine.backbones import build_model

        return build_model(self.name, self.classes, self.weights, progress, cancel)


class ModelPanel(QWidget):
    model_ready = Signal(str)  # backbone name, once its layer tree is shown
    busy_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.backbone = ""
        self.weights = "default"
        self.num_classes = PLACEHOLDER_CLASSES
        self.build_task: Task | None = None
        self.unavailable: str | None = None  # why no network can train, after a failed build
        self.layers = LayerEditor()

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search backbones (resnet, vit, mobile…)")
        self.search.setClearButtonEnabled(True)
        self.backbone_filter = BackboneFilter(self)
        self.backbone_view = QTreeView()
        self.backbone_view.setModel(self.backbone_filter)
        self.backbone_view.setUniformRowHeights(True)
        self.backbone_view.setAlternatingRowColors(True)
        self.weights_combo = QComboBox()
        self.weights_combo.addItems(
            ["ImageNet weights", "Random initialisation", "Weights from a file…"]
        )
        self.weights_label = QLabel()
        self.download_progress = QProgressBar()
        self.download_progress.hide()
        self.cancel_download = QPushButton("Cancel")
        self.cancel_download.hide()
        self.banner = Banner()
        self.advisor = AdvisorBox(runner)
        self.compare = CompareView(runner)

        picker = QWidget()
        picker_layout = QVBoxLayout(picker)
        picker_layout.setContentsMargins(0, 0, 0, 0)
        picker_layout.addWidget(QLabel("<b>Backbone</b> (pretrained on ImageNet)"))
        picker_layout.addWidget(self.search)
        picker_layout.addWidget(self.backbone_view, stretch=1)
        weights_row = QHBoxLayout()
        weights_row.addWidget(QLabel("Start from:"))
        weights_row.addWidget(self.weights_combo)
        weights_row.addWidget(self.weights_label, stretch=1)
        picker_layout.addLayout(weights_row)
        download_row = QHBoxLayout()
        download_row.addWidget(self.download_progress, stretch=1)
        download_row.addWidget(self.cancel_download)
        picker_layout.addLayout(download_row)
        picker_layout.addWidget(self.advisor)

        self.side_tabs = QTabWidget()
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.addTab(self.layers, "Layers")
        self.side_tabs.addTab(self.compare, "Compare backbones")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(picker)
        splitter.addWidget(self.side_tabs)
        splitter.setSizes([420, 680])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, stretch=1)

        self.search.textChanged.connect(self._on_search_text_changed)
        self.backbone_view.clicked.connect(self._on_backbone_view_clicked)
        self.layers.plan_edited.connect(self._on_layers_plan_edited)
        self.weights_combo.activated.connect(self._on_weights_combo_activated)
        self.cancel_download.clicked.connect(self._on_cancel_download_clicked)
        self.advisor.apply_requested.connect(self.set_preset)
        self.compare.use_requested.connect(self._on_compare_use_requested)

    @property
    def ready(self) -> bool:
        """A preview network is shown and no newer one is being built."""
        return self.layers.built is not None and self.build_task is None

    # --- backbones -----------------------------------------------------------------------
    def set_backbones(self, infos: list[BackboneInfo], preferred: str | None = None) -> None:
        """Fill the picker (once the engine is loaded) and select ``preferred`` or the
        default backbone."""
        self.layers.start()
        self.compare.set_backbones(infos)
        model = build_backbone_model(infos, self)
        self.backbone_filter.setSourceModel(model)
        self.backbone_view.selectionModel().currentChanged.connect(
            self._on_backbone_view_current_changed
        )
        model.setHeaderData(
            1,
            Qt.Orientation.Horizontal,
            "Parameters with its ImageNet head (1,000 classes). The layer tree counts "
            "them with your head, sized for your classes.",
            Qt.ItemDataRole.ToolTipRole,
        )
        model.setHeaderData(1, Qt.Orientation.Horizontal, "Params (ImageNet)")
        header = self.backbone_view.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        default = next((i.name for i in infos if i.default), infos[0].name)
        names = {info.name for info in infos}
        self.select_backbone(preferred if preferred in names else default)

    def select_backbone(self, name: str) -> bool:
        matches = self.backbone_filter.match(
            self.backbone_filter.index(0, 0),
            NAME_ROLE,
            name,
            1,
            Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive,
        )
        if not matches:
            if self.build_task is not None:
                self.build_task.discard()  # not the network asked for
            self._no_network(
                f"Unknown backbone {name!r}.", NO_NETWORK, "Choose a backbone from the list."
            )
            self.backbone_view.setCurrentIndex(QModelIndex())  # no row stands for it
            self._build_ended()  # its busy_changed re-reads the blocker
            return False
        self.backbone_view.expand(matches[0].parent())
        self.backbone_view.setCurrentIndex(matches[0])
        self.backbone_view.scrollTo(matches[0])
        if name != self.backbone or (self.layers.built is None and self.build_task is None):
            self._choose(name)  # currentChanged does not fire for the row already current
        return True

    @Slot(QModelIndex, QModelIndex)
    def _on_backbone_view_current_changed(self, current: QModelIndex, _: QModelIndex) -> None:
        name = current.data(NAME_ROLE)
        if name and name != self.backbone:
            self._choose(name)

    @Slot(QModelIndex)
    def _on_backbone_view_clicked(self, index: QModelIndex) -> None:
        """With no network loaded, a click on the current row builds it: on the row that
        failed it tries again (``currentChanged`` stays silent for the current row)."""
        name = index.data(NAME_ROLE)
        if name and self.unavailable and self.build_task is None:
            self._choose(name)

    def _choose(self, name: str) -> None:
        if self.backbone and name != self.backbone:
            self.layers.forget_choices()
        self.backbone = name
        self.rebuild()

    @Slot(str)
    def _on_compare_use_requested(self, name: str) -> None:
        """The comparison's pick: chosen here with its default (pretrained) weights, as
        it was measured, and its layers shown."""
        other_weights = self.weights != "default"
        if other_weights:
            self.weights = "default"
            self._show_weights()
        if other_weights and name == self.backbone:
            self.rebuild()
        else:
            self.select_backbone(name)
        self.side_tabs.setCurrentWidget(self.layers)

    @Slot(str)
    def _on_search_text_changed(self, text: str) -> None:
        self.backbone_filter.setFilterFixedString(text)
        if text:
            self.backbone_view.expandAll()

    # --- weights ---------------------------------------------------------------------------
    @Slot(int)
    def _on_weights_combo_activated(self, index: int) -> None:
        choice = WEIGHT_CHOICES[index]
        if choice == "file":
            path, _ = QFileDialog.getOpenFileName(
                self, "Choose a weights file", "", "Weights (*.safetensors *.pt *.pth *.bin *.ckpt)"
            )
            if not path:
                self._show_weights()
                return
            self.set_weights(path)
        else:
            self.set_weights(choice)

    def set_weights(self, weights: str) -> None:
        self.weights = weights
        self._show_weights()
        self.rebuild()

    def _show_weights(self) -> None:
        index = WEIGHT_CHOICES.index(self.weights) if self.weights in WEIGHT_CHOICES else 2
        self.weights_combo.setCurrentIndex(index)
        self.weights_label.setText("" if index < 2 else self.weights)

    # --- building the preview network -----------------------------------------------------
    def set_num_classes(self, count: int) -> None:
        if count != self.num_classes:
            self.num_classes = count
            self.rebuild()

    def rebuild(self) -> None:
        """Build the chosen network in a task; a build still going is discarded (its
        download stops at the next chunk)."""
        if not self.backbone:
            return
        if self.build_task is not None:
            self.build_task.discard()
        for source in (NETWORK_SOURCE, PLAN_SOURCE):
            self.banner.clear(source)  # their causes are re-evaluated by this build
        self.advisor.reset()  # advice measured another network
        self.unavailable = None
        self.layers.forget_network(f"Loading {self.backbone}…")
        self._end_download()
        job = NetworkBuild(self.backbone, self.num_classes, self.weights)
        self.build_task = task = self.runner.run_function(job, "build network")
        task.progressed.connect(self._on_build_task_progressed)
        task.succeeded.connect(self._on_build_task_succeeded)
        task.failed.connect(self._on_build_task_failed)
        task.cancelled.connect(self._on_build_task_cancelled)
        self.busy_changed.emit(True)

    @Slot(list)
    def _on_build_task_progressed(self, events: list[object]) -> None:
        latest = events[-1]
        if not isinstance(latest, Progress):
            return
        done, total = latest.done, latest.total
        self.download_progress.show()
        self.cancel_download.show()
        self.cancel_download.setEnabled(True)
        if total > 0:
            self.download_progress.setRange(0, 1000)
            self.download_progress.setValue(int(1000 * done / total))
        else:
            self.download_progress.setRange(0, 0)  # size unknown: a busy bar
        self.download_progress.setFormat(
            f"Downloading weights… {done / 2**20:.0f} of {total / 2**20:.0f} MB"
        )

    def _end_download(self) -> None:
        self.download_progress.hide()
        self.cancel_download.hide()

    def _build_ended(self) -> None:
        self.build_task = None
        self._end_download()
        self.busy_changed.emit(False)

    @Slot(object)
    def _on_build_task_succeeded(self, built: BuiltModel) -> None:
        self._build_ended()
        # The first application reports a plan that did not fit; a second would not.
        warning = self.layers.show_network(built, self.num_classes)
        if warning:
            self.banner.show_warning(warning, source=PLAN_SOURCE)
        self.model_ready.emit(built.spec.name)

    @Slot(str, str)
    def _on_build_task_failed(self, message: str, details: str) -> None:
        self._no_network(
            message, NO_NETWORK, "Choose another backbone, or click this one to retry.", details
        )
        self._build_ended()  # last: its busy_changed re-reads the blocker set above

    @Slot()
    def _on_build_task_cancelled(self) -> None:
        self._no_network(
            "Download cancelled. Choose the backbone again to retry.",
            "No network loaded: the download was cancelled (step 2).",
            level="info",
        )
        self._build_ended()
        self.backbone = ""  # so choosing the same row again retries
        self.backbone_view.setCurrentIndex(QModelIndex())

    def _no_network(
        self, message: str, blocker: str, hint: str = "", details: str = "", level: str = "error"
    ) -> None:
        """No network will train: say why in the banner and in place of the tree, and
        block Start until a build succeeds (``rebuild`` lifts all three)."""
        self.unavailable = blocker
        self.layers.forget_network("No network loaded.", f"{message} {hint}".strip())
        self.banner.clear(PLAN_SOURCE)
        self.banner.show_message(level, message, details, source=NETWORK_SOURCE)

    @Slot()
    def _on_layers_plan_edited(self) -> None:
        self.banner.clear(PLAN_SOURCE)  # the user chose a plan: the fallback note is moot

    @Slot()
    def _on_cancel_download_clicked(self) -> None:
        if self.build_task is not None:
            self.build_task.cancel()
            self.cancel_download.setEnabled(False)
            self.download_progress.setFormat("Cancelling…")

    # --- editing and recipes -----------------------------------------------------------------
    def set_preset(self, preset: str) -> None:
        """A plan chosen whole (the advisor's, the Train step's one-click fix)."""
        self.layers.set_preset(preset)
        self.banner.clear(PLAN_SOURCE)

    def set_editable(self, editable: bool) -> None:
        """Lock the choices while a run is going."""
        self.layers.set_editable(editable)
        for widget in (self.backbone_view, self.search, self.weights_combo, self.advisor):
            widget.setEnabled(editable)
        self.compare.set_editable(editable)

    def update_recipe(self, recipe: Recipe) -> Recipe:
        """The recipe with this step's fields replaced, every other field kept."""
        if self.backbone:
            recipe = recipe.replace(backbone=self.backbone, weights=self.weights)
        return self.layers.update_recipe(recipe)

    def show_recipe(self, recipe: Recipe) -> None:
        self.layers.show_recipe(recipe)
        self.weights = recipe.weights
        self._show_weights()
        self.backbone = ""  # selecting it then builds it, keeping the recipe's plan
        self.select_backbone(recipe.backbone)
