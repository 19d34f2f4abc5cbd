"""A persistent XLA compilation cache, so a repeated run does not compile the same programs again.

Compiling the network dominates a short prediction on a CPU (README, "Use it on your own photos"); JAX can keep
the compiled executables on disk and reuse them in the next process with the same program, shapes, JAX version
and machine. `enable_compilation_cache()` switches that on for the current process; call it before the first
`jax.jit` function runs (the prediction command does; training can do so at its start).

Where: `$DUALFOCUS_JAX_CACHE_DIR` if set, else `$XDG_CACHE_HOME/dualfocus_jax/xla`, else
`~/.cache/dualfocus_jax/xla`. Set `DUALFOCUS_JAX_CACHE_DIR=off` (or pass --nocompilation_cache to the
prediction command) to switch it off. Entries are keyed by a hash of the program, the compiler options and the
JAX/XLA version, so a stale entry is never used for a changed program; deleting the folder is always safe.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import jax

CACHE_ENV = "DUALFOCUS_JAX_CACHE_DIR"
_OFF = ("", "0", "off", "false", "no", "none")


def default_cache_dir() -> str | None:
    """The cache folder the rules above give (None when the environment switches the cache off)."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in _OFF else os.path.abspath(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dualfocus_jax", "xla")


def enable_compilation_cache(cache_dir: str | None = None, *, min_compile_time_s: float = 0.5) -> str | None:
    """Switches JAX's persistent compilation cache on for this process; returns the folder, or None.

    Args:
      cache_dir: folder for the cache (created); None = `default_cache_dir()`.
      min_compile_time_s: programs that compile faster than this are not stored (they cost more to read
        than to recompile).
    Never fails: a folder that cannot be created or written only gives a warning and leaves the cache off.
    """
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    if folder is None:
        return None
    folder = os.path.abspath(os.path.expanduser(folder))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        warnings.warn(f"compilation cache off: cannot write to {folder!r} ({error}); set {CACHE_ENV} to another "
                      "folder to cache compiled programs between runs.", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
