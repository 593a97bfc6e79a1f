"""UI layer: models."""
