"""The commands' absl flags (dualfocus_jax/command_flags.py): one `error:` line and exit status 2 for a bad flag,
a fresh parse per call, JAX's options as flags, commands that import together, and the benchmarks' command
lines for each other still parsing."""

import importlib
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from benchmarks import bench_classical, bench_model, run_all
from dualfocus_jax import predict
from dualfocus_jax.command_flags import parse_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("dualfocus_jax.predict", "benchmarks.run_all", "benchmarks.bench_classical", "benchmarks.bench_solvers",
            "benchmarks.bench_model", "benchmarks.bench_device", "experiments.ablation",
            "experiments.engine_samples", "experiments.evaluate_generalisation", "experiments.evaluate_pretrained")
NO_STACK = ["--stack", "/nonexistent/stack", "--out", "/nonexistent/out", "--method", "classical"]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["--stack", "s", "--out", "o", "--bogus"], "Unknown command line flag 'bogus'"),
    (["--stack", "s", "--out", "o", "--focus_unit", "inches"], "--focus_unit=inches: value should be one of"),
    (["--stack", "s", "--out", "o", "--max_size=big"], "--max_size=big"),
    (["--stack", "s"], "--out"),
    (["--stack", "s", "--out", "o", "extra"], "unexpected arguments ['extra']"),
    (["--stack", "s", "--out", "o", "--noalign=yes"], "noalign"),
])
def test_the_predictor_answers_a_bad_flag_with_one_line_and_status_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exited:
        predict.main(argv)
    assert exited.value.code == 2
    assert words in one_error_line(capsys)


def test_the_predictor_parses_each_call_afresh(capsys):
    assert predict.main([*NO_STACK, "--noalign", "--nocompilation_cache", "--max_size=64"]) == 2  # no such stack
    assert (predict.FLAGS.align, predict.FLAGS.compilation_cache, predict.FLAGS.max_size) == (False, False, 64)
    assert predict.main(NO_STACK) == 2
    assert (predict.FLAGS.align, predict.FLAGS.compilation_cache, predict.FLAGS.max_size) == (True, True, 640)
    assert "Focal-stack folder not found" in capsys.readouterr().err


def test_jax_options_are_flags_of_a_command():
    script = ("import jax\nfrom dualfocus_jax.predict import main\n"
              f"assert main({NO_STACK + ['--jax_enable_x64']!r}) == 2\n"
              "assert jax.config.jax_enable_x64\n"
              f"main({NO_STACK + ['--jax_enable_x46']!r})\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Unknown command line flag 'jax_enable_x46'")


@pytest.mark.parametrize("module, argv, words", [
    ("benchmarks.run_all", ["--only=bench_classical,bench_x"], "unknown benchmarks ['bench_x']"),
    ("benchmarks.run_all", ["--jax_platforms=cpu"], "Unknown command line flag 'jax_platforms'"),  # runs no JAX
    ("benchmarks.bench_solvers", ["--cg-iters=5"], "Unknown command line flag 'cg-iters'"),  # now --cg_iters
    ("benchmarks.bench_classical", ["--repeats=0"], "--repeats=0"),
    ("benchmarks.bench_device", ["--skip=two"], "--skip=two"),
    ("experiments.ablation", ["--seeds=0,one"], "needs comma-separated integers"),
    ("experiments.evaluate_generalisation", ["--skip=engine,moon"], "--skip knows engine"),
    ("experiments.evaluate_pretrained", ["--workdir=w"], "name the folder to export to with --out"),
    ("experiments.engine_samples", ["--seed", "x"], "--seed=x"),
])
def test_every_command_answers_a_bad_flag_with_one_line_and_status_2(module, argv, words, capsys):
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(argv)
    assert exited.value.code == 2
    assert words in one_error_line(capsys)


def test_help_lists_the_flags_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exited:
        run_all.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m benchmarks.run_all [flags]") and "--[no]quick" in out
    assert "--only: comma-separated subset of" in out


def test_commands_import_together_without_registering_global_flags():
    for name in COMMANDS:
        module = importlib.import_module(name)
        assert isinstance(module.FLAGS, flags.FlagValues) and module.FLAGS is not flags.FLAGS, name
    assert not {"quick", "out", "stack", "only"} & set(flags.FLAGS)


def test_the_benchmarks_command_lines_for_each_other_parse(monkeypatch):
    for name in ("bench_classical", "bench_solvers", "bench_model"):
        module = importlib.import_module(f"benchmarks.{name}")
        parse_flags(module.FLAGS, run_all.QUICK_ARGS[name], program=name, doc="")
        assert module.FLAGS.quick
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps({"ok": 1}) + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    parse_flags(bench_model.FLAGS, [], program="bench_model", doc="")
    bench_model._case_in_subprocess("small", "dfv", (3, 64, 48), 2, "bfloat16", "joint_bilateral")
    parse_flags(bench_model.FLAGS, commands[-1][3:], program="bench_model", doc="")
    assert (bench_model.FLAGS.case, bench_model.FLAGS.repeats, bench_model.FLAGS.dtype) == (
        ["small", "dfv", "3", "64", "48"], 2, "bfloat16")
    assert bench_model.FLAGS.cost_upsampling == "joint_bilateral"
    parse_flags(bench_classical.FLAGS, ["--repeats=3", "--time_budget=1.5"], program="bench_classical", doc="")
    bench_classical._run_case_in_subprocess("render layered", 64, 3)
    parse_flags(bench_classical.FLAGS, commands[-1][3:], program="bench_classical", doc="")
    assert json.loads(bench_classical.FLAGS.case) == {"workload": "render layered", "size": 64, "slices": 3,
                                                       "repeats": 3, "budget": 1.5}


# The commands that keep absl's app.run and global FLAGS (see command_flags.run_with_jax_flags).
APP_RUN_COMMANDS = ("experiments.train", "experiments.prepare_data", "experiments.demo", "benchmarks.bench_train",
                    "benchmarks.bench_precision")


def run_command(module, *args, jax_platforms=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_PLATFORMS", None)
    if jax_platforms:
        env["JAX_PLATFORMS"] = jax_platforms
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("module", APP_RUN_COMMANDS)
def test_the_app_run_commands_start_with_jax_options_defined(module):
    with open(os.path.join(REPO, *module.split(".")) + ".py", encoding="utf-8") as handle:
        source = handle.read()
    assert "run_with_jax_flags(main" in source.split('if __name__ == "__main__":')[-1], module
    # JAX's options are flags of the command when it runs as a program (absl's --helpfull exits with status 1).
    result = run_command(module, "--helpfull")
    assert "--jax_platforms" in result.stdout and "--[no]jax_enable_x64" in result.stdout


def test_jax_options_reach_jax_before_the_launchers_main(tmp_path):
    # JAX_PLATFORMS names no backend: only a --jax_platforms=cpu applied before main lets the commands list devices.
    result = run_command("experiments.train", "--jax_platforms=cpu", f"--workdir={tmp_path / 'w'}", "--mode=eval",
                         jax_platforms="bogus")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "holds no recorded config" in result.stderr
    assert "bogus" not in result.stderr and "Traceback" not in result.stderr
    result = run_command("benchmarks.bench_precision", "--jax_platforms=cpu", "--noaccuracy", "--nospeed",
                         jax_platforms="bogus")
    assert result.returncode == 0 and "× cpu" in result.stdout, result.stderr[-2000:]
    result = run_command("benchmarks.bench_train", "--jax_platforms=cpu", "--sources=moon", jax_platforms="bogus")
    assert result.returncode == 1 and "--sources: unknown ['moon']" in result.stderr, result.stderr[-2000:]
    assert "bogus" not in result.stderr


def test_a_jax_option_leaves_the_launchers_own_flag_checks_in_place():
    result = run_command("experiments.train", "--jax_platforms=cpu", "--config=configs/demo.py:runlocal")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: flag --workdir=None: Flag --workdir must have a value other than None. (--helpshort lists the flags)"]
    result = run_command("experiments.prepare_data", "--jax_platforms=cpu", "--dataset=synthetic_focal")
    assert result.returncode == 1 and "Flag --data_dir must have a value other than None" in result.stderr
    assert "jax_platforms" not in result.stderr


def test_bench_model_shapes_flag_parses_and_rejects_bad_shapes():
    assert bench_model.parse_shape("10x384x576") == (10, 384, 576)
    assert bench_model.parse_shape("5×256×256") == (5, 256, 256)
    for bad in ("10x384", "0x64x64", "axbxc"):
        with pytest.raises(ValueError, match="SxHxW"):
            bench_model.parse_shape(bad)
    parse_flags(bench_model.FLAGS, ["--shapes=5x256x256,10x384x576"], program="bench_model", doc="")
    assert bench_model.FLAGS.shapes == ["5x256x256", "10x384x576"]
    with pytest.raises(SystemExit):
        parse_flags(bench_model.FLAGS, ["--shapes=10x384"], program="bench_model", doc="")
