"""Pieces the dataset builders share: manual-dir checks, file readers, example assembly, rendering."""
