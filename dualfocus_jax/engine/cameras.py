"""The camera catalogue of the focal-stack engine: phone cameras, DSLR lenses and the dataset protocols' cameras.

Each entry is a range of thin-lens cameras; a draw picks a focal length, an f-number, a sensor width and the
width in pixels of the image the user's stack is worked at (the predictor's working resolution, 640 px by
default), so the pixel pitch is sensor width / image width. Values are the public specifications of typical
devices (the ranges span the devices of each class, not one model):

| entry           | family   | focal length | f-number  | sensor width | what it stands for                           |
|-----------------|----------|--------------|-----------|--------------|----------------------------------------------|
| phone_main      | phone    | 4.0–7.0 mm   | f/1.5–2.0 | 5.6–9.8 mm   | the main camera of a recent phone            |
| phone_tele      | phone    | 6.0–10 mm    | f/2.2–2.8 | 4.0–6.0 mm   | a phone's 2–3× telephoto                     |
| phone_ultrawide | phone    | 2.0–3.0 mm   | f/1.8–2.4 | 4.0–6.4 mm   | a phone's ultra-wide (little defocus)        |
| dslr_standard   | dslr     | 24–50 mm     | f/1.4–5.6 | 22.3–36 mm   | APS-C / full-frame with a standard prime     |
| dslr_portrait   | dslr     | 85–135 mm    | f/1.8–4.0 | 22.3–36 mm   | portrait lenses                              |
| dslr_macro      | dslr     | 60–105 mm    | f/2.8–11  | 22.3–36 mm   | macro lenses at close range                  |
| nyuv2           | protocol | 50 mm        | f/8       | 12 µm pixels | the NYUv2 focal-stack protocol (HybridDepth) |
| arkitscenes     | protocol | 2.9 mm       | f/0.5     | 3.1 mm       | the ARKitScenes protocol (HybridDepth)       |
| fod500          | protocol | 2.9 mm       | f/1.0     | 3.1 mm       | FoD500 (DefocusNet's Blender camera)¹        |
| ddff12          | protocol | 9.5 mm       | f/2.0     | 6.4 mm       | DDFF-12's Lytro Illum at its widest zoom²    |

¹ sensor assumed to be ARKitScenes'.
² approximate.

Each entry also gives the distances its scenes are drawn from (macro lenses close, phones from 5 cm).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dualfocus_jax.rendering.thin_lens import ThinLensCamera

CAMERA_FAMILIES = ("phone", "dslr", "protocol")


@dataclasses.dataclass(frozen=True)
class CameraModel:
    """A range of thin-lens cameras (lengths in metres). `pixel_size_m` > 0 fixes the pixel pitch (the NYUv2
    protocol) instead of deriving it from the sensor width."""

    name: str
    family: str
    focal_length_m: tuple[float, float]
    f_number: tuple[float, float]
    sensor_width_m: tuple[float, float]
    scene_distance_m: tuple[float, float]
    image_width_px: tuple[int, int] = (256, 1024)
    pixel_size_m: float = 0.0


CATALOGUE: tuple[CameraModel, ...] = (
    CameraModel("phone_main", "phone", (4.0e-3, 7.0e-3), (1.5, 2.0), (5.6e-3, 9.8e-3), (0.05, 20.0)),
    CameraModel("phone_tele", "phone", (6.0e-3, 10e-3), (2.2, 2.8), (4.0e-3, 6.0e-3), (0.15, 20.0)),
    CameraModel("phone_ultrawide", "phone", (2.0e-3, 3.0e-3), (1.8, 2.4), (4.0e-3, 6.4e-3), (0.03, 10.0)),
    CameraModel("dslr_standard", "dslr", (24e-3, 50e-3), (1.4, 5.6), (22.3e-3, 36e-3), (0.3, 50.0)),
    CameraModel("dslr_portrait", "dslr", (85e-3, 135e-3), (1.8, 4.0), (22.3e-3, 36e-3), (0.9, 50.0)),
    CameraModel("dslr_macro", "dslr", (60e-3, 105e-3), (2.8, 11.0), (22.3e-3, 36e-3), (0.2, 2.0)),
    CameraModel("nyuv2", "protocol", (50e-3, 50e-3), (8.0, 8.0), (0.0, 0.0), (0.5, 10.0), pixel_size_m=1.2e-5),
    CameraModel("arkitscenes", "protocol", (2.9e-3, 2.9e-3), (0.5, 0.5), (3.1e-3, 3.1e-3), (0.3, 8.0)),
    CameraModel("fod500", "protocol", (2.9e-3, 2.9e-3), (1.0, 1.0), (3.1e-3, 3.1e-3), (0.08, 2.0)),
    CameraModel("ddff12", "protocol", (9.5e-3, 9.5e-3), (2.0, 2.0), (6.4e-3, 6.4e-3), (0.4, 8.0)),
)
CAMERA_NAMES = tuple(model.name for model in CATALOGUE)


@dataclasses.dataclass(frozen=True)
class DrawnCamera:
    """One camera of the catalogue: the lens, the entry it came from and the working image width."""

    lens: ThinLensCamera
    model: CameraModel
    image_width_px: int

    @property
    def defocus_px_per_diopter(self) -> float:
        """CoC diameter in pixels per diopter of defocus (`ThinLensCamera.defocus_px_per_diopter`)."""
        return self.lens.defocus_px_per_diopter

    def describe(self) -> dict:
        return {"camera": self.model.name, "camera_family": self.model.family,
                "focal_length_mm": 1e3 * self.lens.focal_length_m, "f_number": self.lens.f_number,
                "pixel_size_um": 1e6 * self.lens.pixel_size_m, "image_width_px": self.image_width_px}


def camera_model_named(name: str) -> CameraModel:
    for model in CATALOGUE:
        if model.name == name:
            return model
    raise ValueError(f"unknown camera {name!r}; the catalogue has {list(CAMERA_NAMES)}.")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else float(low)


def draw_camera(rng: np.random.Generator, model: CameraModel) -> DrawnCamera:
    """A camera of `model`'s ranges (focal length and f-number log-uniform, image width log-uniform)."""
    focal = _log_uniform(rng, *model.focal_length_m)
    f_number = _log_uniform(rng, *model.f_number)
    width = int(round(_log_uniform(rng, *model.image_width_px)))
    if model.pixel_size_m > 0:
        pixel = model.pixel_size_m * 640.0 / width  # the protocol's pitch at its 640-px images, rescaled
    else:
        pixel = _log_uniform(rng, *model.sensor_width_m) / width
    return DrawnCamera(ThinLensCamera(focal_length_m=focal, f_number=f_number, pixel_size_m=pixel), model, width)
