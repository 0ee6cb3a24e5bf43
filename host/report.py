"""`python -m host.report RUN` regenerates report.md and report.html of a run from its metrics.json;
`python -m host.report RUN_A RUN_B [--out comparison.html]` compares two runs (docs/report.md).
Library: host.reporting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host.core.errors import UserError, run_cli
from host.reporting.files import compare, regenerate, resolve_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m host.report",
        description="Regenerate report.md and report.html of a run from its metrics.json, or compare two runs.")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run id under results/ or a results directory; two runs: write a comparison")
    parser.add_argument("--out", type=Path, default=None,
                        help="comparison file (or directory for comparison.html); default ./comparison.html")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.runs) > 2:
        raise UserError(f"give one run (regenerate its report) or two (compare them), not {len(args.runs)}")
    directories = [resolve_run(r) for r in args.runs]
    if len(directories) == 1:
        if args.out is not None:
            raise UserError("--out applies to comparisons of two runs; a run's report is written into its directory")
        paths = regenerate(directories[0])
        print(f"wrote {paths['report']} and {paths['html']}")
        return 0
    out = compare(directories[0], directories[1], args.out or Path("comparison.html"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
