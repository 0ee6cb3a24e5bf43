"""`python -m host.kernels [FEATURE …]`: which kernel backs each op on a core with these CPU features
(mve, dsp, fpu; none: the portable kernels), read from firmware/engine/tm_kernel_table.h, the one
table that decides it (docs/engine.md, "Optimized kernels"). Library: host.compiler.kernel_table.
"""

from __future__ import annotations

import argparse
import sys

from host.compiler.kernel_table import FEATURES, describe
from host.core.errors import UserError, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("features", nargs="*", metavar="FEATURE",
                        help=f"CPU features of the core ({', '.join(FEATURES)}); none: portable kernels only")
    args = parser.parse_args(argv)
    unknown = [f for f in args.features if f not in FEATURES]
    if unknown:
        raise UserError(f"unknown feature {unknown[0]!r}", hint=f"the table's features: {', '.join(FEATURES)}")
    print("\n".join(describe(args.features)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
