"""synthetic_focal: the embedded default focal-stack dataset (no download)."""
