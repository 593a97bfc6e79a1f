"""The Qt-free engine: data, backbones, freezing, training, export.

Nothing under this package may import PySide6, pyqtgraph or ``finetune_studio.ui``;
``tests/engine/test_layering.py`` enforces it.
"""
