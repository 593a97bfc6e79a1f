"""UI layer: the editor of the layer tree's learning-rate multiplier cells.

A line edit rather than Qt's default spin box for a float (two decimals, so 0.001
could not be typed, and no way to say "no setting of my own"): the text is the row's
own multiplier, and empty text gives the setting up, so the row follows the row
above again. The placeholder shows what that would be.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPersistentModelIndex,
    QRegularExpression,
    Qt,
)
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QLineEdit, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from ...engine.parameters import multiplier_for, with_multiplier
from ..models.parameter_tree_model import ParameterTreeModel

Index = QModelIndex | QPersistentModelIndex
# A non-negative decimal (either separator), optionally with an exponent, or nothing.
_NUMBER = QRegularExpression(r"^$|^(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?$")


class MultiplierDelegate(QStyledItemDelegate):
    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        editor = QLineEdit(parent)
        editor.setFrame(False)
        editor.setValidator(QRegularExpressionValidator(_NUMBER, editor))
        editor.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return editor

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        assert isinstance(editor, QLineEdit)
        editor.setText(str(index.data(Qt.ItemDataRole.EditRole) or ""))
        editor.setPlaceholderText(self._inherited(index))
        editor.selectAll()

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: Index) -> None:
        assert isinstance(editor, QLineEdit)
        model.setData(index, editor.text().strip().replace(",", "."), Qt.ItemDataRole.EditRole)

    @staticmethod
    def _inherited(index: Index) -> str:
        """What the row would follow without its own setting."""
        model = index.model()
        if not isinstance(model, ParameterTreeModel):
            return ""
        path = model.node(index).path
        inherited = multiplier_for(path, with_multiplier(model.multipliers, path, None))
        return f"{inherited:g} (from the row above)"
