"""Thin-lens focal-stack synthesis: an all-in-focus image and its depth in, a focal stack out.

`render_focal_stack(image_HWC, depth_HW, focus_positions_S, camera, mode="gaussian" | "layered")`; the
cameras of the NYUv2 and ARKitScenes protocols are `NYUV2_CAMERA` and `arkitscenes_camera(width)`.
"""

from dualfocus_jax.rendering.thin_lens import (
    NYUV2_CAMERA,
    RENDER_MODES,
    ThinLensCamera,
    arkitscenes_camera,
    circle_of_confusion_m,
    circle_of_confusion_px,
    render_focal_stack,
)

__all__ = [
    "NYUV2_CAMERA",
    "RENDER_MODES",
    "ThinLensCamera",
    "arkitscenes_camera",
    "circle_of_confusion_m",
    "circle_of_confusion_px",
    "render_focal_stack",
]
