"""A TCP proxy that damages a serial link on purpose: bit flips, dropped, duplicated and
delayed bytes, at configurable rates in each direction, reproducibly (seeded).

`python -m host.faultproxy --target HOST:PORT` puts one in front of a serial server, for
trying the link by hand (library: host.link.faultproxy).
"""

from __future__ import annotations

import argparse
import sys
import time

from host.link.faultproxy import FaultProxy, Faults, address


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.faultproxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the serial server (e.g. QEMU's -serial tcp:...)")
    p.add_argument("--listen", type=int, default=0, help="local port (default: any free one)")
    p.add_argument("--rate", type=float, default=1e-3, help="corrupted bytes per byte, each direction (default 1e-3)")
    p.add_argument("--delay", type=float, default=0.0, help="probability per byte of a stall (default 0)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    faults = Faults.mix(args.rate, delay=args.delay)
    with FaultProxy(address(args.target), faults, faults, seed=args.seed, listen_port=args.listen) as proxy:
        print(f"faultproxy: 127.0.0.1:{proxy.port} -> {args.target}, {faults}", flush=True)
        try:
            while True:
                time.sleep(5)
                print("  " + "; ".join(f"{k}: {v}" for k, v in proxy.stats.items()), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
