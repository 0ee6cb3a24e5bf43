"""slingshot host orchestrator: quantize, compile, flash, attack, evaluate.

The top-level modules of this package are the commands (`python -m host.<command>`: evaluate,
check, flash, report, quantize, perf, bench, bench_attacks, emulator, renode, faultproxy,
mlperf_runner, kernels); each
subpackage is one concern, layered as docs/architecture.md draws it and `make lint` enforces.
"""

__version__ = "0.1.0"
