"""UI layer: a Qt item model over the engine's ``ParameterTree``.

Column 0 carries a tri-state "train" check box derived from the leaves (never
stored twice: the engine tree reads ``requires_grad``). Checking a row writes every
parameter below it, then ``dataChanged`` covers the subtree and the ancestors.
The learning-rate multiplier column is editable; a row shows the multiplier in
effect for it (its own, or the nearest ancestor's: the engine's rule, so the tree
shows what the optimizer will do). A row whose training or multiplier is set on the
row itself is drawn in bold, so the user sees where each setting comes from.
"""

from __future__ import annotations

import math

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont

from ...engine.parameters import (
    ParameterNode,
    ParameterTree,
    TrainState,
    human_count,
    multiplier_for,
    multiplier_origin,
    with_multiplier,
)

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Layer", "Type", "Parameters", "Trainable", "LR ×")
NAME, TYPE, PARAMS, TRAINABLE, LR = range(len(COLUMNS))
HEADER_TOOLTIPS = (
    "Tick a row to train it, untick it to keep it frozen. Ticking a row sets every "
    "layer below it. Bold: a setting made on this row itself.",
    "The kind of layer, or a parameter's shape.",
    "Parameters in this row, everything below it included.",
    "How many of them train.",
    "Learning-rate multiplier: this row learns at the learning rate of step 3 times "
    "this number (0 keeps it fixed). Rows below follow it, except those with their own "
    "(in bold): the nearest setting wins. Double-click to change it; leave it empty "
    "to follow the row above again.",
)
_CHECK = {
    TrainState.TRAINABLE: Qt.CheckState.Checked,
    TrainState.FROZEN: Qt.CheckState.Unchecked,
    TrainState.PARTIAL: Qt.CheckState.PartiallyChecked,
}


class ParameterTreeModel(QAbstractItemModel):
    trainable_changed = Signal(str, bool)  # path, trainable: a user edit to record in the plan
    multiplier_changed = Signal(str)  # path whose own multiplier was set or cleared

    def __init__(
        self,
        tree: ParameterTree,
        multipliers: dict[str, float] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tree = tree
        self.multipliers: dict[str, float] = dict(multipliers or {})
        # The freeze plan's overridden paths, pushed by the plan's owner: only for bold.
        self._freeze_overrides: frozenset[str] = frozenset()
        self._rows: dict[int, int] = {}
        for node in tree.nodes():
            for row, child in enumerate(node.children):
                self._rows[id(child)] = row
        self._bold = QFont()
        self._bold.setBold(True)

    # --- structure -------------------------------------------------------------------
    def node(self, index: Index) -> ParameterNode:
        return index.internalPointer() if index.isValid() else self.tree.root

    def index_of(self, node: ParameterNode, column: int = 0) -> QModelIndex:
        if node is self.tree.root:
            return QModelIndex()
        return self.createIndex(self._rows[id(node)], column, node)

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:
        children = self.node(parent).children
        if not (0 <= row < len(children) and 0 <= column < len(COLUMNS)):
            return QModelIndex()
        return self.createIndex(row, column, children[row])

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self.node(index).parent
        return QModelIndex() if parent is None else self.index_of(parent)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TOOLTIPS[section]
        return None

    # --- data --------------------------------------------------------------------------
    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        node = self.node(index)
        if index.column() == NAME and node.total > 0:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        if index.column() == LR and node.total > 0:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        node, column = self.node(index), index.column()
        if role == Qt.ItemDataRole.CheckStateRole and column == NAME:
            return _CHECK.get(node.state())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, column)
        if role == Qt.ItemDataRole.EditRole and column == LR:
            own = self.multipliers.get(node.path)
            return "" if own is None else f"{own:g}"  # what an edit replaces: the row's own
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (PARAMS, TRAINABLE, LR):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and self.is_override(node, column):
            return self._bold
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        return None

    def is_override(self, node: ParameterNode, column: int = NAME) -> bool:
        """Whether ``column`` shows a setting made on this row itself (drawn bold); the
        name column does for either setting."""
        freeze = node.path in self._freeze_overrides
        lr = node.path in self.multipliers
        return {NAME: freeze or lr, TRAINABLE: freeze, LR: lr}.get(column, False)

    def _display(self, node: ParameterNode, column: int) -> str | None:
        if column == NAME:
            return node.name
        if column == TYPE:
            return "×".join(map(str, node.shape)) if node.shape is not None else node.type_name
        if column == PARAMS:
            return f"{node.total:,}" if node.total else ""
        if column == TRAINABLE:
            return f"{node.trainable_count():,}" if node.total else ""
        if column == LR and node.total:
            return f"{multiplier_for(node.path, self.multipliers):g}"
        return None

    def _tooltip(self, node: ParameterNode) -> str:
        shapes = node.direct_parameter_shapes()
        lines = [node.path or "(model)", f"{human_count(node.total)} parameters"]
        lines += [f"{name}: {'×'.join(map(str, shape))}" for name, shape in shapes.items()]
        if node.total:
            lines += self._settings_lines(node)
        return "\n".join(lines)

    def _settings_lines(self, node: ParameterNode) -> list[str]:
        """Where this row's training and multiplier come from."""
        lines = []
        if node.path in self._freeze_overrides:
            state = "trains" if node.state() is not TrainState.FROZEN else "frozen"
            lines.append(f"Training: set on this row ({state})")
        multiplier = f"LR × {multiplier_for(node.path, self.multipliers):g}"
        origin = multiplier_origin(node.path, self.multipliers)
        if origin == node.path:
            lines.append(f"{multiplier}: set on this row")
        elif origin is not None:
            lines.append(f"{multiplier}: from {origin or 'the whole model'}")
        return lines

    def setData(self, index: Index, value: object, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid():
            return False
        node = self.node(index)
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == NAME:
            if not isinstance(value, (Qt.CheckState, int)):
                return False
            trainable = Qt.CheckState(value) != Qt.CheckState.Unchecked
            node.set_trainable(trainable)
            self.refresh_subtree(node)
            self.trainable_changed.emit(node.path, trainable)
            return True
        if role == Qt.ItemDataRole.EditRole and index.column() == LR:
            return self._set_multiplier(node, value)
        return False

    def _set_multiplier(self, node: ParameterNode, value: object) -> bool:
        """Set the row's own multiplier; None or empty text removes it. Rows below keep
        theirs (the nearest setting wins), so nothing the user set is lost."""
        multiplier: float | None = None
        if value is not None and str(value).strip() != "":
            try:
                multiplier = float(str(value).strip())
            except ValueError:
                return False
            if not (math.isfinite(multiplier) and multiplier >= 0):
                return False
        self.multipliers = with_multiplier(self.multipliers, node.path, multiplier)
        self.refresh_subtree(node)
        self.multiplier_changed.emit(node.path)
        return True

    def set_freeze_overrides(self, paths: frozenset[str]) -> None:
        """The rows whose training the user set on the row itself, for bold."""
        changed = paths ^ self._freeze_overrides
        self._freeze_overrides = paths
        for path in changed:
            if path in self.tree and path:
                self._announce(self.tree[path])

    # --- change notification -------------------------------------------------------------
    def refresh_subtree(self, node: ParameterNode) -> None:
        """Announce new values for ``node``, everything below it, and its ancestors."""
        self._announce_children(node)
        if node is not self.tree.root:
            self._announce(node)
        for ancestor in node.ancestors():
            if ancestor is not self.tree.root:
                self._announce(ancestor)

    def refresh_all(self) -> None:
        self.refresh_subtree(self.tree.root)

    def _announce(self, node: ParameterNode) -> None:
        first, last = self.index_of(node, 0), self.index_of(node, len(COLUMNS) - 1)
        self.dataChanged.emit(first, last)

    def _announce_children(self, node: ParameterNode) -> None:
        if not node.children:
            return
        parent = self.index_of(node)
        self.dataChanged.emit(
            self.index(0, 0, parent), self.index(len(node.children) - 1, len(COLUMNS) - 1, parent)
        )
        for child in node.children:
            self._announce_children(child)
