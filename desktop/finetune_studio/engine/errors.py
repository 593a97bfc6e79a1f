"""Engine layer: errors a user can act on.

Everything raised as a ``UserFacingError`` carries a message written for the person
at the keyboard: what went wrong and what to do. The CLI prints it on one line and
exits with 2; the window shows it in a dialog. Anything else is a bug.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Bad input (a folder, a file, an option); the message says what to do."""


class DatasetError(UserFacingError):
    """The dataset folder cannot be used as it is."""


class WeightsError(UserFacingError):
    """Weights cannot be found, downloaded, or loaded safely."""


class RecipeError(UserFacingError):
    """A recipe (run description) has a missing or invalid value."""


class ExportError(UserFacingError):
    """A model folder cannot be written or read."""


class WorkerProcessError(UserFacingError):
    """DataLoader worker processes cannot start in this installation."""
