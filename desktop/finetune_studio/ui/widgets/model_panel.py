"""UI layer: step 2, pick a backbone and decide which layers train.

The layer tree edits a preview copy of the network built here; the training run
builds its own from the recipe, so the GUI thread never touches a model in use.
Every click becomes part of the recipe's freeze plan (a preset plus ordered
overrides), so a saved project restores the tree exactly.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..models.backbone_model import NAME_ROLE, BackboneFilter, build_backbone_model
from ..models.parameter_tree_model import ParameterTreeModel
from ..workers.tasks import TaskRunner
from .banner import Banner

PLACEHOLDER_CLASSES = 2  # the head's size until a dataset is loaded
WEIGHT_CHOICES = ("default", "none", "file")


class ModelPanel(QWidget):
    model_ready = Signal(str)  # backbone name, once its layer tree is shown
    busy_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.backbone = ""
        self.weights = "default"
        self.num_classes = PLACEHOLDER_CLASSES
        self.plan: Any = None  # FreezePlan, created once the engine is loaded
        self.multipliers: dict[str, float] = {}
        self.built: Any = None
        self.tree: Any = None
        self.tree_model: ParameterTreeModel | None = None
        self._build_task: int | None = None
        self._pending_rebuild = False

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

        self.layer_view = QTreeView()
        self.layer_view.setUniformRowHeights(True)
        self.layer_view.setAlternatingRowColors(True)
        self.head_button = QPushButton("Train head only")
        self.last_button = QPushButton("Train last")
        self.last_blocks = QSpinBox()
        self.last_blocks.setRange(1, 99)
        self.last_blocks.setValue(2)
        self.last_blocks.setSuffix(" blocks")
        self.all_button = QPushButton("Train everything")
        self.summary = QLabel("Choose a backbone to see its layers.")
        self.train_batchnorm = QCheckBox("Train BatchNorm layers in frozen parts")
        self.gradual = QCheckBox("Gradual unfreezing: train the head alone for")
        self.gradual_epochs = QSpinBox()
        self.gradual_epochs.setRange(1, 999)
        self.gradual_epochs.setValue(2)
        self.gradual_epochs.setSuffix(" epochs, then the checked layers")

        layers = QWidget()
        layers_layout = QVBoxLayout(layers)
        layers_layout.setContentsMargins(0, 0, 0, 0)
        layers_layout.addWidget(QLabel("<b>Layers</b>: checked layers train, the rest stay frozen"))
        presets = QHBoxLayout()
        for widget in (self.head_button, self.last_button, self.last_blocks, self.all_button):
            presets.addWidget(widget)
        presets.addStretch()
        layers_layout.addLayout(presets)
        layers_layout.addWidget(self.layer_view, stretch=1)
        layers_layout.addWidget(self.summary)
        options = QGroupBox("Options")
        options_layout = QVBoxLayout(options)
        options_layout.addWidget(self.train_batchnorm)
        gradual_row = QHBoxLayout()
        gradual_row.addWidget(self.gradual)
        gradual_row.addWidget(self.gradual_epochs)
        gradual_row.addStretch()
        options_layout.addLayout(gradual_row)
        layers_layout.addWidget(options)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(picker)
        splitter.addWidget(layers)
        splitter.setSizes([420, 680])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, stretch=1)

        self.search.textChanged.connect(self._on_search_text_changed)
        self.weights_combo.activated.connect(self._on_weights_combo_activated)
        self.cancel_download.clicked.connect(self._on_cancel_download_clicked)
        self.head_button.clicked.connect(self._on_head_button_clicked)
        self.last_button.clicked.connect(self._on_last_button_clicked)
        self.all_button.clicked.connect(self._on_all_button_clicked)
        self.train_batchnorm.toggled.connect(self._on_train_batchnorm_toggled)
        self._set_layer_controls_enabled(False)

    # --- backbones -----------------------------------------------------------------------
    def set_backbones(self, infos: list[Any], preferred: str | None = None) -> None:
        """Fill the picker (once the engine is loaded) and select ``preferred`` or the
        default backbone."""
        from ...engine.freezing import FreezePlan

        if self.plan is None:
            self.plan = FreezePlan()
        model = build_backbone_model(infos, self)
        self.backbone_filter.setSourceModel(model)
        self.backbone_view.selectionModel().currentChanged.connect(
            self._on_backbone_view_current_changed
        )
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
            self.banner.show_error(f"Unknown backbone {name!r}.")
            return False
        self.backbone_view.expand(matches[0].parent())
        self.backbone_view.setCurrentIndex(matches[0])
        self.backbone_view.scrollTo(matches[0])
        if name != self.backbone or (self.built is None and self._build_task is None):
            self._choose(name)  # currentChanged does not fire for the row already current
        return True

    @Slot(QModelIndex, QModelIndex)
    def _on_backbone_view_current_changed(self, current: QModelIndex, _: QModelIndex) -> None:
        name = current.data(NAME_ROLE)
        if name and name != self.backbone:
            self._choose(name)

    def _choose(self, name: str) -> None:
        from ...engine.freezing import FreezePlan

        if self.backbone and name != self.backbone:
            # Paths differ between networks: keep the preset, drop per-layer choices.
            self.plan = FreezePlan(self.plan.preset)
            self.multipliers = {}
        self.backbone = name
        self.rebuild()

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
        if not self.backbone:
            return
        if self._build_task is not None:
            self._pending_rebuild = True
            self.runner.cancel(self._build_task)
            return
        name, classes, weights = self.backbone, self.num_classes, self.weights
        self.banner.clear()
        self.summary.setText(f"Loading {name}…")
        self._set_layer_controls_enabled(False)
        self.busy_changed.emit(True)

        def build(progress: Any, cancel: threading.Event) -> Any:
            from ...engine.backbones import build_model

            return build_model(name, classes, weights, progress, cancel)

        self._build_task = self.runner.start(
            build,
            self._build_succeeded,
            self._build_failed,
            self._download_progressed,
            self._build_cancelled,
        )

    def _download_progressed(self, done: int, total: int) -> None:
        self.download_progress.show()
        self.cancel_download.show()
        self.download_progress.setRange(0, max(total, 1))
        self.download_progress.setValue(done)
        self.download_progress.setFormat(
            f"Downloading weights… {done / 2**20:.0f} of {total / 2**20:.0f} MB"
        )

    def _build_finished(self) -> bool:
        """Common end of a build; True when a newer request has to run now."""
        self._build_task = None
        self.download_progress.hide()
        self.cancel_download.hide()
        self.busy_changed.emit(False)
        if self._pending_rebuild:
            self._pending_rebuild = False
            self.rebuild()
            return True
        return False

    def _build_succeeded(self, built: Any) -> None:
        if self._build_finished():
            return
        from ...engine.parameters import ParameterTree

        self.built = built
        self.tree = ParameterTree(built.model)
        self.tree_model = ParameterTreeModel(self.tree, self.multipliers, self)
        self.tree_model.trainable_changed.connect(self._on_tree_model_trainable_changed)
        self.tree_model.multiplier_changed.connect(self._on_tree_model_multiplier_changed)
        self.layer_view.setModel(self.tree_model)
        header = self.layer_view.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.layer_view.expandToDepth(0)
        units = self._block_count()
        self.last_blocks.setMaximum(max(units, 1))
        self._apply_plan()
        self._set_layer_controls_enabled(True)
        self.model_ready.emit(built.spec.name)

    def _build_failed(self, message: str, details: str) -> None:
        if self._build_finished():
            return
        self.summary.setText("No network loaded.")
        self.banner.show_error(message, details)

    def _build_cancelled(self) -> None:
        if self._build_finished():
            return
        self.summary.setText("Download cancelled.")
        self.banner.show_info("Download cancelled. Choose the backbone again to retry.")
        self.backbone = ""  # so choosing the same row again retries
        self.backbone_view.setCurrentIndex(QModelIndex())

    @Slot()
    def _on_cancel_download_clicked(self) -> None:
        if self._build_task is not None:
            self.runner.cancel(self._build_task)

    def _block_count(self) -> int:
        from ...engine.freezing import block_units

        return len(block_units(self.built.model, self.built.head_path))

    # --- the freeze plan ----------------------------------------------------------------------
    def _apply_plan(self) -> None:
        """Write the plan into the preview network, then refresh the tree and summary."""
        from ...engine.errors import RecipeError
        from ...engine.freezing import FreezePlan, apply_freeze_plan

        if self.built is None or self.tree_model is None:
            return
        try:
            apply_freeze_plan(
                self.built.model, self.built.head_path, self.plan, self.train_batchnorm.isChecked()
            )
        except RecipeError as error:  # a plan saved for another network
            self.banner.show_warning(f"{error} Using the {self.plan.preset} preset instead.")
            self.plan = FreezePlan(self.plan.preset)
            apply_freeze_plan(
                self.built.model, self.built.head_path, self.plan, self.train_batchnorm.isChecked()
            )
        self.tree_model.refresh_all()
        self._update_summary()

    def set_preset(self, preset: str) -> None:
        from ...engine.freezing import FreezePlan

        self.plan = FreezePlan(preset)
        self._apply_plan()

    def _update_summary(self) -> None:
        if self.tree is not None:
            self.summary.setText(str(self.tree.summary()))

    @Slot()
    def _on_head_button_clicked(self) -> None:
        self.set_preset("head")

    @Slot()
    def _on_last_button_clicked(self) -> None:
        self.set_preset(f"last:{self.last_blocks.value()}")

    @Slot()
    def _on_all_button_clicked(self) -> None:
        self.set_preset("none")

    @Slot(bool)
    def _on_train_batchnorm_toggled(self, _: bool) -> None:
        self._apply_plan()

    @Slot(str, bool)
    def _on_tree_model_trainable_changed(self, path: str, trainable: bool) -> None:
        self.plan = self.plan.with_override(path, trainable)
        self._update_summary()

    @Slot(str, float)
    def _on_tree_model_multiplier_changed(self, path: str, multiplier: float) -> None:
        if self.tree_model is not None:
            self.multipliers = dict(self.tree_model.multipliers)

    def _set_layer_controls_enabled(self, enabled: bool) -> None:
        for widget in (
            self.layer_view,
            self.head_button,
            self.last_button,
            self.last_blocks,
            self.all_button,
            self.train_batchnorm,
        ):
            widget.setEnabled(enabled)

    def set_editable(self, editable: bool) -> None:
        """Lock the choices while a run is going."""
        self._set_layer_controls_enabled(editable and self.built is not None)
        for widget in (
            self.backbone_view,
            self.search,
            self.weights_combo,
            self.gradual,
            self.gradual_epochs,
        ):
            widget.setEnabled(editable)

    # --- recipes --------------------------------------------------------------------------
    def recipe_fields(self) -> dict[str, Any]:
        from ...engine.freezing import GradualUnfreeze

        return {
            "backbone": self.backbone,
            "weights": self.weights,
            "freeze": self.plan,
            "lr_multipliers": dict(self.multipliers),
            "train_batchnorm": self.train_batchnorm.isChecked(),
            "gradual_unfreeze": GradualUnfreeze(self.gradual_epochs.value())
            if self.gradual.isChecked()
            else None,
        }

    def apply_recipe(self, recipe: Any) -> None:
        self.plan = recipe.freeze
        self.multipliers = dict(recipe.lr_multipliers)
        self.train_batchnorm.blockSignals(True)
        self.train_batchnorm.setChecked(recipe.train_batchnorm)
        self.train_batchnorm.blockSignals(False)
        self.gradual.setChecked(recipe.gradual_unfreeze is not None)
        if recipe.gradual_unfreeze is not None:
            self.gradual_epochs.setValue(recipe.gradual_unfreeze.head_epochs)
        self.weights = recipe.weights
        self._show_weights()
        self.backbone = recipe.backbone  # set first, so selecting it keeps the plan
        self.select_backbone(recipe.backbone)
        self.rebuild()

    @property
    def ready(self) -> bool:
        return self.built is not None and self._build_task is None
