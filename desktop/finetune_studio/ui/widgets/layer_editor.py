"""UI layer: the half of step 2 that decides which layers train.

The layer tree edits a preview copy of the network built by the model panel; the
training run builds its own from the recipe, so the GUI thread never touches a
model in use. Every click becomes part of the recipe's freeze plan (a preset plus
ordered overrides), so a saved project restores the tree exactly. Without a network
that will train (loading, or a load that failed) the tree shows no network at all,
only the reason: never a previous network that no run would use.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..models.parameter_tree_model import LR, NAME, ParameterTreeModel
from .multiplier_delegate import MultiplierDelegate
from .wording import count_suffix

if TYPE_CHECKING:
    from ...engine.backbones import BuiltModel
    from ...engine.freezing import FreezePlan, GradualUnfreeze
    from ...engine.parameters import ParameterTree
    from ...engine.recipe import Recipe

DEFAULT_HEAD_EPOCHS = 2
GRADUAL_TOOLTIP = (
    "Train only the new head for this many epochs, then the layers checked above "
    "too, with a fresh learning-rate schedule. The head learns something sensible "
    "first, so its first, large errors do not disturb the pretrained layers."
)
BATCHNORM_TOOLTIP = (
    "Off: BatchNorm layers inside frozen parts keep their pretrained statistics. On: "
    "they train, and adapt their statistics to your pictures; a row you untick stays "
    "frozen."
)


class LayerEditor(QWidget):
    """Owns the recipe's freeze plan, learning-rate multipliers, ``train_batchnorm``
    and gradual unfreezing."""

    plan_changed = Signal()  # what trains may differ (the Train step's notes follow it)
    plan_edited = Signal()  # the user chose what trains (a preset, a click, BatchNorm)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plan: FreezePlan | None = None  # created once the engine is loaded
        self.multipliers: dict[str, float] = {}
        self.built: BuiltModel | None = None
        self.classes: int | None = None  # the head's size in the network shown
        self.tree: ParameterTree | None = None
        self.tree_model: ParameterTreeModel | None = None
        self._editable = True
        self._gradual_paths: tuple[str, ...] = ()  # no widget edits them; kept as given

        self.layer_view = QTreeView()
        self.layer_view.setUniformRowHeights(True)
        self.layer_view.setAlternatingRowColors(True)
        self.layer_view.setItemDelegateForColumn(LR, MultiplierDelegate(self.layer_view))
        self.placeholder = QLabel("<b>Choose a backbone to see its layers.</b>")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setMargin(24)
        # Framed on the view's background: it reads as the empty tree, not as a note.
        self.placeholder.setFrameShape(QFrame.Shape.StyledPanel)
        self.placeholder.setBackgroundRole(QPalette.ColorRole.Base)
        self.placeholder.setAutoFillBackground(True)
        self.placeholder.setTextFormat(Qt.TextFormat.RichText)
        self.placeholder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tree_stack = QStackedWidget()  # the placeholder until a network is shown
        self.tree_stack.addWidget(self.placeholder)
        self.tree_stack.addWidget(self.layer_view)
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
        self.gradual_epochs.setValue(DEFAULT_HEAD_EPOCHS)
        count_suffix(self.gradual_epochs, "epoch", ", then the checked layers")
        self._set_tooltips()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Layers</b>: checked layers train, the rest stay frozen"))
        presets = QHBoxLayout()
        for widget in (self.head_button, self.last_button, self.last_blocks, self.all_button):
            presets.addWidget(widget)
        presets.addStretch()
        layout.addLayout(presets)
        layout.addWidget(self.tree_stack, stretch=1)
        layout.addWidget(self.summary)
        options = QGroupBox("Options")
        options_layout = QVBoxLayout(options)
        options_layout.addWidget(self.train_batchnorm)
        gradual_row = QHBoxLayout()
        gradual_row.addWidget(self.gradual)
        gradual_row.addWidget(self.gradual_epochs)
        gradual_row.addStretch()
        options_layout.addLayout(gradual_row)
        layout.addWidget(options)

        self.head_button.clicked.connect(self._on_head_button_clicked)
        self.last_button.clicked.connect(self._on_last_button_clicked)
        self.all_button.clicked.connect(self._on_all_button_clicked)
        self.train_batchnorm.toggled.connect(self._on_train_batchnorm_toggled)
        self.gradual.toggled.connect(self.plan_changed)
        self._update_enabled()

    def _set_tooltips(self) -> None:
        self.head_button.setToolTip("Freeze the backbone; train only the new head.")
        self.last_button.setToolTip("Train the head and the backbone's last blocks.")
        self.last_blocks.setToolTip("How many of the backbone's last blocks train.")
        self.all_button.setToolTip("Train every layer (fine-tune the whole network).")
        self.train_batchnorm.setToolTip(BATCHNORM_TOOLTIP)
        self.gradual.setToolTip(GRADUAL_TOOLTIP)
        self.gradual_epochs.setToolTip(GRADUAL_TOOLTIP)

    # --- the network shown ---------------------------------------------------------------
    def start(self) -> None:
        """The engine is loaded: the plan can exist."""
        from ...engine.freezing import FreezePlan

        if self.plan is None:
            self.plan = FreezePlan()

    def forget_network(self, message: str, reason: str = "") -> None:
        """A new network is on its way (or none will come): show ``message`` (and the
        ``reason``) in place of the tree, and nothing to edit meanwhile."""
        self.summary.setText(message)
        text = f"<b>{html.escape(message)}</b>"
        self.placeholder.setText(f"{text}<br><br>{html.escape(reason)}" if reason else text)
        self.tree_stack.setCurrentWidget(self.placeholder)
        self.built = None
        self.tree = None
        if self.tree_model is not None:
            self.layer_view.setModel(None)
            self.tree_model.deleteLater()
            self.tree_model = None
        self._update_enabled()
        self.plan_changed.emit()

    def forget_choices(self) -> None:
        """Paths differ between networks: keep the preset, drop per-layer choices."""
        from ...engine.freezing import FreezePlan

        if self.plan is not None:
            self.plan = FreezePlan(self.plan.preset)
        self.multipliers = {}

    def show_network(self, built: BuiltModel, classes: int | None = None) -> str | None:
        """Show ``built`` with the plan applied; returns ``apply_plan``'s warning."""
        from ...engine.freezing import block_units
        from ...engine.parameters import ParameterTree

        self.built = built
        self.classes = classes
        old_model = self.tree_model
        self.tree = ParameterTree(built.model)
        self.tree_model = ParameterTreeModel(self.tree, self.multipliers, self)
        self.tree_model.trainable_changed.connect(self._on_tree_model_trainable_changed)
        self.tree_model.multiplier_changed.connect(self._on_tree_model_multiplier_changed)
        if old_model is not None:
            old_model.deleteLater()
        self.layer_view.setModel(self.tree_model)
        self.tree_stack.setCurrentWidget(self.layer_view)
        header = self.layer_view.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The spare width goes to the names, so the multipliers sit beside Trainable, not far away.
        header.setStretchLastSection(False)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        self.layer_view.expandToDepth(0)
        self.last_blocks.setMaximum(max(len(block_units(built.model, built.head_path)), 1))
        warning = self.apply_plan()
        self._update_enabled()
        return warning

    # --- editing ---------------------------------------------------------------------------
    def set_editable(self, editable: bool) -> None:
        """Lock every choice while a run is going. Remembered, so a network that
        arrives during the run does not unlock the tree again."""
        self._editable = editable
        self._update_enabled()

    def _update_enabled(self) -> None:
        has_network = self._editable and self.built is not None
        for widget in (
            self.layer_view,
            self.head_button,
            self.last_button,
            self.last_blocks,
            self.all_button,
            self.train_batchnorm,
        ):
            widget.setEnabled(has_network)
        self.gradual.setEnabled(self._editable)
        self.gradual_epochs.setEnabled(self._editable)

    def apply_plan(self) -> str | None:
        """Write the plan into the preview network, then refresh the tree and summary.
        Returns a warning when the plan did not fit this network."""
        from ...engine.errors import RecipeError
        from ...engine.freezing import FreezePlan, apply_freeze_plan

        if self.built is None or self.tree_model is None or self.plan is None:
            return None
        model, head_path = self.built.model, self.built.head_path
        warning = None
        try:
            apply_freeze_plan(model, head_path, self.plan, self.train_batchnorm.isChecked())
        except RecipeError as error:  # a plan saved for another network
            warning = f"{error} Using the {self.plan.preset} preset instead."
            self.plan = FreezePlan(self.plan.preset)
            apply_freeze_plan(model, head_path, self.plan, self.train_batchnorm.isChecked())
        self.tree_model.set_freeze_overrides(self.plan.overridden_paths())
        self.tree_model.refresh_all()
        self._update_summary()
        self.plan_changed.emit()
        return warning

    def set_preset(self, preset: str) -> None:
        from ...engine.freezing import FreezePlan

        self.plan = FreezePlan(preset)
        self.apply_plan()

    def _update_summary(self) -> None:
        """The tree counts the network with the user's head; the backbone list counts
        it with its ImageNet head. Say so, or the two figures look contradictory."""
        from ...engine.parameters import human_count

        if self.tree is None:
            return
        text = str(self.tree.summary())
        if self.built is not None and self.classes:
            imagenet = human_count(self.built.spec.num_params)
            head = "1 class" if self.classes == 1 else f"{self.classes} classes"
            text += f" with your head for {head} ({imagenet} with its ImageNet head)"
        self.summary.setText(text)

    @Slot()
    def _on_head_button_clicked(self) -> None:
        self.set_preset("head")
        self.plan_edited.emit()

    @Slot()
    def _on_last_button_clicked(self) -> None:
        self.set_preset(f"last:{self.last_blocks.value()}")
        self.plan_edited.emit()

    @Slot()
    def _on_all_button_clicked(self) -> None:
        self.set_preset("none")
        self.plan_edited.emit()

    @Slot(bool)
    def _on_train_batchnorm_toggled(self, _: bool) -> None:
        self.apply_plan()
        self.plan_edited.emit()

    @Slot(str, bool)
    def _on_tree_model_trainable_changed(self, path: str, trainable: bool) -> None:
        if self.plan is not None:
            self.plan = self.plan.with_override(path, trainable)
            if self.tree_model is not None:
                self.tree_model.set_freeze_overrides(self.plan.overridden_paths())
        self._update_summary()
        self.plan_changed.emit()
        self.plan_edited.emit()

    @Slot(str)
    def _on_tree_model_multiplier_changed(self, path: str) -> None:
        if self.tree_model is not None:
            self.multipliers = dict(self.tree_model.multipliers)

    # --- recipes ---------------------------------------------------------------------------
    def gradual_unfreeze(self) -> GradualUnfreeze | None:
        from ...engine.freezing import GradualUnfreeze

        if not self.gradual.isChecked():
            return None
        return GradualUnfreeze(self.gradual_epochs.value(), self._gradual_paths)

    def update_recipe(self, recipe: Recipe) -> Recipe:
        return recipe.replace(
            freeze=self.plan if self.plan is not None else recipe.freeze,
            lr_multipliers=dict(self.multipliers),
            train_batchnorm=self.train_batchnorm.isChecked(),
            gradual_unfreeze=self.gradual_unfreeze(),
        )

    def show_recipe(self, recipe: Recipe) -> None:
        """Take the recipe's choices; they reach the tree once its network is shown."""
        self.plan = recipe.freeze
        self.multipliers = dict(recipe.lr_multipliers)
        self.train_batchnorm.blockSignals(True)
        self.train_batchnorm.setChecked(recipe.train_batchnorm)
        self.train_batchnorm.blockSignals(False)
        gradual = recipe.gradual_unfreeze
        self.gradual.setChecked(gradual is not None)
        self.gradual_epochs.setValue(gradual.head_epochs if gradual else DEFAULT_HEAD_EPOCHS)
        self._gradual_paths = gradual.paths if gradual else ()
