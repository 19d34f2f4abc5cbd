"""The accelerator benchmark's bookkeeping: program memory from XLA, and a run that keeps every finished row."""

import csv

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_device


def test_program_memory_counts_at_least_the_arguments_and_outputs():
    x = jnp.ones((256, 256), jnp.float32)  # 256 KiB in, 256 KiB out
    compiled = jax.jit(lambda a: a * 2.0 + 1.0).lower(x).compile()
    mib = bench_device.compiled_memory_mib(compiled)
    assert np.isnan(mib) or mib >= 0.5 - 1e-6


def test_a_failing_case_is_reported_and_the_others_are_kept(tmp_path, monkeypatch, capsys):
    def fake_forward(size, variant, shape, repeats):
        if variant == "dfv":
            raise MemoryError("RESOURCE_EXHAUSTED: out of memory\nmore detail")
        return dict(kind="forward", size=size, variant=variant, batch=1, shape=shape, params=840_000,
                    compile_s=1.0, seconds=0.002, throughput="1.00 MP/s", memory_mib=12.0)

    def fake_train(size, variant, batch, shape, repeats):
        return dict(kind="train step", size=size, variant=variant, batch=batch, shape=shape, params=840_000,
                    compile_s=2.0, seconds=0.01, throughput="200.0 stacks/s", memory_mib=50.0)

    monkeypatch.setattr(bench_device, "forward_case", fake_forward)
    monkeypatch.setattr(bench_device, "train_case", fake_train)
    assert bench_device.main(["--quick", "--out", str(tmp_path), "--commit", "abc"]) == 0
    rows = list(csv.reader(open(tmp_path / "bench_device.csv", encoding="utf-8")))
    assert rows[0] == bench_device.COLUMNS
    assert [r[0] for r in rows[1:]] == ["train step", "forward"]  # the failed dfv case is not a data row
    markdown = (tmp_path / "bench_device.md").read_text(encoding="utf-8")
    assert "failed: MemoryError: RESOURCE_EXHAUSTED: out of memory |" in markdown
    assert "commit abc" in markdown
    assert bench_device.main(["--quick", "--skip", "2", "--out", str(tmp_path)]) == 0
    rows = list(csv.reader(open(tmp_path / "bench_device.csv", encoding="utf-8")))
    assert len(rows) == 1  # --skip 2 leaves only the failing case of the quick plan
