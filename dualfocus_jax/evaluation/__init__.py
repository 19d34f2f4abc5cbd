"""Evaluation of depth from focus: metrics, protocols, region masks, evaluation loops, evaluators, reports.

Modules (one concern each): metrics (the literature's depth metrics, masked, per image), protocols (each
dataset's slices, mask and clipping), regions (depth-edge and fine-texture masks), evaluate (the network and
the classical baseline over a split, batches split over a mesh), evaluators (one per `config.evals` entry,
run by the training loop), reports (tables, per-image CSV) and panels (PNG pictures of examples).
"""
