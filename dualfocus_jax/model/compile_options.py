"""XLA compile options for code whose compile time outweighs its run time.

Parameter initialisation runs once, and the unit tests run tiny inputs a handful of times; for both, XLA:CPU's
LLVM optimisation dominates the wall time (README, "Benchmarks"). Pass these to `jax.jit(...,
compiler_options=...)` there; training and benchmarks keep the default, optimised build. Accelerator backends
ignore these CPU flags.
"""

# The two CPU options `jax_disable_most_optimizations` sets (jax/_src/compiler.py), given per function: that flag
# is process-wide and read only when a function first compiles (jit's cache ignores it), so it could not leave
# the train step optimised while the one-off parameter initialisation of the same process is not.
FAST_COMPILE_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}
