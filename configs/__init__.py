"""Experiment configs: one `get_config(arg)` file per training recipe, plus `demo.py` (see `common.py`)."""
