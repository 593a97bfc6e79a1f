"""CLI layer: the `compare` command (being written; registered here so the command
modules stay listed in one place)."""

from __future__ import annotations

from .common import Commands, Handler


def add_commands(commands: Commands) -> dict[str, Handler]:
    return {}
