"""Pure tensor functions behind the metrics (no state, no models)."""
