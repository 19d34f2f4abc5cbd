"""A coloured point cloud from a depth map and pinhole intrinsics, written as binary little-endian PLY."""

from __future__ import annotations

import numpy as np

DEFAULT_FOV_DEG = 65.0  # horizontal field of view of a typical phone main camera (about 26 mm equivalent)


def intrinsics_from_fov(height: int, width: int, fov_deg: float = DEFAULT_FOV_DEG) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels for square pixels, the principal point at the image centre and a horizontal
    field of view of `fov_deg` degrees (0 < fov < 180)."""
    if not 0.0 < float(fov_deg) < 180.0 or not np.isfinite(fov_deg):
        raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov_deg!r}.")
    focal = (width / 2.0) / np.tan(np.deg2rad(fov_deg) / 2.0)
    return float(focal), float(focal), (width - 1) / 2.0, (height - 1) / 2.0


def depth_to_points(depth_HW: np.ndarray, intrinsics: tuple[float, float, float, float]) -> np.ndarray:
    """(H·W, 3) camera-frame points (x right, y down, z forward), in the unit of depth; depth is the z
    coordinate (distance along the optical axis), as focus distances are for a thin lens."""
    fx, fy, cx, cy = intrinsics
    h, w = depth_HW.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = np.asarray(depth_HW, np.float64)
    return np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1).reshape(-1, 3).astype(np.float32)


def write_ply(path: str, points_N3: np.ndarray, colours_N3: np.ndarray) -> str:
    """Binary PLY with float32 x, y, z and uint8 red, green, blue (colours in [0, 1]); non-finite points
    are dropped. Returns the path."""
    points = np.asarray(points_N3, np.float32)
    colours = np.clip(np.round(np.asarray(colours_N3, np.float32) * 255), 0, 255).astype(np.uint8)
    keep = np.all(np.isfinite(points), axis=1)
    points, colours = points[keep], colours[keep]
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points.T
    vertex["red"], vertex["green"], vertex["blue"] = colours.T
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex.tobytes())
    return path


def read_ply(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float32, colours (N, 3) uint8) from a PLY written by `write_ply`."""
    with open(path, "rb") as handle:
        data = handle.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int([line for line in header if line.startswith("element vertex")][0].split()[-1])
    vertex = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                              ("red", "u1"), ("green", "u1"), ("blue", "u1")], count=count)
    return (np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1),
            np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1))
