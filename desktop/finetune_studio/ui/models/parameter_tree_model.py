"""UI layer: a Qt item model over the engine's ``ParameterTree``.

Column 0 carries a tri-state "train" check box derived from the leaves (never
stored twice: the engine tree reads ``requires_grad``). Checking a row writes every
parameter below it, then ``dataChanged`` covers the subtree and the ancestors.
The learning-rate multiplier column is editable; a row shows the multiplier in
effect for it (its own, or the nearest ancestor's).
"""

from __future__ import annotations

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
)

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Layer", "Type", "Parameters", "Trainable", "LR ×")
NAME, TYPE, PARAMS, TRAINABLE, LR = range(len(COLUMNS))
_CHECK = {
    TrainState.TRAINABLE: Qt.CheckState.Checked,
    TrainState.FROZEN: Qt.CheckState.Unchecked,
    TrainState.PARTIAL: Qt.CheckState.PartiallyChecked,
}


class ParameterTreeModel(QAbstractItemModel):
    trainable_changed = Signal(str, bool)  # path, trainable: a user edit to record in the plan
    multiplier_changed = Signal(str, float)  # path, multiplier

    def __init__(
        self,
        tree: ParameterTree,
        multipliers: dict[str, float] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tree = tree
        self.multipliers: dict[str, float] = dict(multipliers or {})
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
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
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
            return multiplier_for(node.path, self.multipliers)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (PARAMS, TRAINABLE, LR):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and column == LR and node.path in self.multipliers:
            return self._bold
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        return None

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
        return "\n".join(lines)

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
            try:
                multiplier = float(value)  # type: ignore[arg-type]  # a delegate's text
            except (TypeError, ValueError):
                return False
            if multiplier < 0:
                return False
            self.multipliers = {
                p: m for p, m in self.multipliers.items() if not p.startswith(node.path + ".")
            }
            self.multipliers[node.path] = multiplier
            self.refresh_subtree(node)
            self.multiplier_changed.emit(node.path, multiplier)
            return True
        return False

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
