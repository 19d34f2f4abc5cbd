"""Variational parts of DualFocus as pure, jit-able, differentiable JAX functions.

Spatial constraint (docs/design/METHOD.md, "Network" item 3): least-squares integration of per-plane gradient fields
Γ = (g_x, g_y) into the nearest integrable surface z* = argmin_z ‖P z − Γ‖², P the forward-difference
operator, with the constant null space pinned by zero mean.

* `integrate_gradients_dct`: exact, O(HW log HW), DCT-II diagonalisation of the Neumann Laplacian.
* `integrate_gradients_cg`: weighted least squares, conjugate gradient unrolled in `lax.scan`.
* `integrability_residual`: ‖P z − Γ‖² per field.

Grid convention shared by all three: z, g_x and g_y all have shape (..., H, W);
g_x[..., i, j] ≈ z[i, j+1] − z[i, j] and g_y[..., i, j] ≈ z[i+1, j] − z[i, j]; the last column of g_x and
the last row of g_y have no forward difference and are ignored.

Focal constraint (docs/design/METHOD.md, "Losses", L_fv):

* `focal_unimodality_penalty`: the training penalty on non-unimodal focus probabilities, per example.
* `project_unimodal`: exact Euclidean projection of focus probabilities onto unimodal distributions, for
  inference (beyond the paper, see docs/design/METHOD.md "The design's own demand").
"""

from dualfocus_jax.variational.focal_penalty import focal_unimodality_penalty
from dualfocus_jax.variational.poisson_cg import integrate_gradients_cg
from dualfocus_jax.variational.poisson_dct import integrability_residual, integrate_gradients_dct
from dualfocus_jax.variational.unimodal import project_unimodal

__all__ = [
    "focal_unimodality_penalty",
    "integrability_residual",
    "integrate_gradients_cg",
    "integrate_gradients_dct",
    "project_unimodal",
]
