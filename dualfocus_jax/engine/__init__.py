"""The focal-stack engine: endless seeded training stacks with exact depth (see `engine.py`)."""

from dualfocus_jax.engine.cameras import CAMERA_FAMILIES, CAMERA_NAMES, CATALOGUE, CameraModel
from dualfocus_jax.engine.engine import EngineRecords, EngineSettings, draw_focal_stack, is_engine_record
from dualfocus_jax.engine.geometry import HARD_FAMILIES, SCENE_FAMILIES

__all__ = ["CAMERA_FAMILIES", "CAMERA_NAMES", "CATALOGUE", "CameraModel", "EngineRecords", "EngineSettings",
           "HARD_FAMILIES", "SCENE_FAMILIES", "draw_focal_stack", "is_engine_record"]
