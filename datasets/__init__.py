"""TFDS builders for the focal-stack datasets (one folder each, the `tfds new` layout).

Prepare one with `python -m experiments.prepare_data --dataset=NAME --data_dir=... [--manual_dir=...]`
and read it with `tfds.data_source(NAME, data_dir=...)`; neither needs TensorFlow. The example layout
they all share is `dualfocus_jax.data_features`.
"""
