"""Results: the seed's reference figures, per-run reports with plots, and the cross-run table."""
