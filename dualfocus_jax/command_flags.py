"""The command-line convention of every command of the project: absl flags, JAX's options among them.

A command defines its flags at the top of its module in a `flags.FlagValues()` of its own and starts its
`main(argv=None)` with `parse_flags(FLAGS, argv, ...)`. Its own FlagValues, not absl's global `flags.FLAGS`:
commands import each other's functions and the test suite imports them all into one process, where two
modules defining `--out` in the global registry would stop each other's import (DuplicateFlagError); and a
fresh parse per call lets tests run `main(argv)` many times in one process.

A flag error (unknown flag, bad value, a failed check) ends the command with one `error: ...` line on stderr
and exit status 2; `--help` prints the flags and exits 0. `--jax_<option>=value` (e.g. `--jax_platforms=cpu`,
`--nojax_enable_x64`) sets JAX's configuration, read with `jax.config.parse_flags_with_absl()`.

Five commands keep absl's `app.run` and global `flags.FLAGS`: the training launcher `experiments/train.py`
(ml_collections' `--config` file flag with its `--config.<field>` overrides, absl's `--verbosity`),
`experiments/prepare_data.py`, `experiments/demo.py`, `benchmarks/bench_train.py` and
`benchmarks/bench_precision.py`. They start with `run_with_jax_flags(main)` instead of `app.run(main)`: JAX's
options become flags of the same global registry, so `app.run` parses them with the command's own flags in one
pass (validators such as a required `--workdir` see the real command line) and JAX is configured before
`main` runs.
"""

from __future__ import annotations

import copy
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import flags

HELP_ARGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")
JAX_PREFIXES = ("--jax_", "--nojax_")


def usage_error(message: str) -> NoReturn:
    """Ends the command as a flag error does: one `error: ...` line on stderr, exit status 2."""
    print(f"error: {message} (--help lists the flags)", file=sys.stderr, flush=True)
    raise SystemExit(2)


def help_text(flag_values: flags.FlagValues, program: str, doc: str, jax_options: bool) -> str:
    lines = [f"usage: {program} [flags]", "", doc.strip(), "", "flags:"]
    for name in flag_values:
        flag = flag_values[name]
        if name != flag.name:  # a short name: listed with its flag
            continue
        default = "" if flag.default in (None, []) else f" (default: {flag.default_as_str})"
        lines.append(textwrap.fill(f"--{'[no]' if flag.boolean else ''}{name}: {flag.help}{default}", width=100,
                                   initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False,
                                   break_long_words=False))
    if jax_options:
        lines += ["", "JAX's options are flags too: --jax_<option>=value, e.g. --jax_platforms=cpu or --jax_enable_x64 "
                  "(the names of jax.config)."]
    return "\n".join(lines)


def define_jax_flags() -> None:
    """JAX's options as absl flags in the global `flags.FLAGS`, once per process (`jax.config.config_with_absl()`;
    a second definition would raise DuplicateFlagError). Values given on a command line that `absl.app.run`
    parses are applied to JAX after the parse, before `main`."""
    # Imported here: the predictor answers --help and flag errors without loading JAX.
    import jax

    if not jax.config.use_absl:
        jax.config.config_with_absl()


def run_with_jax_flags(main: Callable[[list[str]], object], **run_kwargs) -> None:
    """`absl.app.run(main, **run_kwargs)` for a command on absl's global FLAGS, with JAX's options among its flags
    (`--jax_platforms=cpu`, `--jax_enable_x64`, ...)."""
    from absl import app

    define_jax_flags()
    app.run(main, **run_kwargs)


def apply_jax_options(args: Sequence[str], program: str) -> None:
    """Sets JAX's configuration from `--jax_<option>[=value]` / `--nojax_<option>` arguments."""
    import jax  # here, as in define_jax_flags

    define_jax_flags()
    options = flags.FlagValues()
    for arg in args:
        name = arg[2:].split("=", 1)[0]
        name = name[2:] if name.startswith("nojax_") else name
        if name not in flags.FLAGS:
            raise flags.UnrecognizedFlagError(name, arg)
        if name not in options:
            options[name] = copy.deepcopy(flags.FLAGS[name])  # parsed apart from JAX's own registry
    options([program, *args])
    for name in options:
        jax.config.update(name, options[name].value)


def parse_flags(flag_values: flags.FlagValues, argv: Sequence[str] | None, *, program: str, doc: str,
                jax_options: bool = True) -> None:
    """Parses `argv` (the arguments without the program name; None: the command line) into `flag_values`, every
    flag starting from its default; `--jax_*` arguments set JAX's configuration when `jax_options`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in HELP_ARGS for arg in args):
        print(help_text(flag_values, program, doc, jax_options))
        raise SystemExit(0)
    jax_args = [arg for arg in args if jax_options and arg.startswith(JAX_PREFIXES)]
    flag_values.unparse_flags()
    try:
        rest = flag_values([program, *(arg for arg in args if arg not in jax_args)])
        if rest[1:]:
            raise flags.Error(f"unexpected arguments {rest[1:]} (this command takes only flags)")
        if jax_args:
            apply_jax_options(jax_args, program)
    except (flags.Error, ValueError) as error:  # absl raises ValueError for `--noflag=value`
        usage_error(" ".join(str(error).split()))
