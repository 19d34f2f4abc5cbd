# The README's two commands: `make demo` and `make test`. Both create .venv/ on first use (so does `make lint`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo train-demo lint test bench bench-quick bench-device ablation clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements.txt
	$(PY) -m pip install -qq --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.demo --out runs/demo
	$(PY) -m experiments.train --config configs/demo.py --workdir runs/train_demo
	$(PY) -m dualfocus_jax.predict --stack runs/demo/focal_stack --out runs/predict_demo

train-demo: $(STAMP)
	$(PY) -m experiments.train --config configs/demo.py --workdir runs/train_demo

# ruff, configured in pyproject.toml ([tool.ruff]); CI (.ci/run) runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run_all --quick --out runs/bench_quick

# On a GPU/TPU machine (needs only jax, flax, optax, numpy): forward and training-step time and memory.
bench-device: $(STAMP)
	$(PY) -m benchmarks.bench_device --out experiments/results

# The constraint ablation (5 variants x 3 seeds of the small model, about 45 minutes on 2 CPU cores); resumable.
ablation: $(STAMP)
	$(PY) -m experiments.ablation --recipe=synthetic --steps=1200

clean-venv:
	rm -rf $(VENV)
