"""UI layer: workers."""
