"""Engine layer: review and repair. Per-picture records, out-of-fold probabilities and
the suspected wrong labels, class-activation heatmaps, and the journal through which
pictures are moved between class folders (and back)."""
