"""The Qt layer: PySide6 widgets, item models and workers over the engine."""
