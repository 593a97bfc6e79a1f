"""UI layer: widgets."""
