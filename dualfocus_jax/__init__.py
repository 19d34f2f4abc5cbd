"""dualfocus_jax: depth from focus with DualFocus (NeurIPS 2025) in JAX/Flax.

Entry points: `focal_stack.load_focal_stack` (input), `model.DualFocusNet` (the network), `classical`
(the training-free baseline), `rendering.render_focal_stack` (thin-lens synthesis), `metrics` (the DFF
literature's metrics), and the command `python -m dualfocus_jax.predict --stack DIR --out DIR`.
"""

__version__ = "0.1.0"
