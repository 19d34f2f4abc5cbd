"""focal_engine: a fixed, seeded test split of the focal-stack engine's stacks (no download)."""
