"""UI layer: counts and durations as the window writes them ("1 epoch", "2:05")."""

from __future__ import annotations

from PySide6.QtWidgets import QSpinBox


def plural(count: int, unit: str) -> str:
    """ "1 epoch", "2 epochs": a count with its unit."""
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def count_suffix(spin: QSpinBox, unit: str, rest: str = "") -> None:
    """Keep a spin box's unit singular or plural to match its value."""

    def update(value: int) -> None:
        spin.setSuffix(f" {unit}{'' if value == 1 else 's'}{rest}")

    spin.valueChanged.connect(update)
    update(spin.value())


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
