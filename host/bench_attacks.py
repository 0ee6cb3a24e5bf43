"""`python -m host.bench_attacks` (part of `make bench`): adversarial examples per second for
PGD-20, C&W-L2 and DeepFool on the study's CIFAR-10 ResNet, our batched engine vs ART 1.20,
with both engines' success rates on the same inputs.  Writes the table into docs/bench.md.

Both engines run the registry attack with the study's parameters (only `engine` differs),
back to back so they see the same machine load (PGD: 3 alternating rounds, medians), each
after one untimed warm-up call on two inputs (tracing, ART's set-up), on the same inputs.
--art-num-slow N runs ART's C&W-L2 and DeepFool on the first N inputs only (ART's C&W-L2 takes
~10 min for 200): success is then compared on exactly those N, but the speed-up is inflated,
as ART's cost per batch hardly depends on the batch size (measured: 27× on 50 vs 13× on 200).

--oracles instead times one query per call and a batch of --num against each precision's oracle
of the query attacks (float32 through Keras, int16x8 and int8 through our native engine): what
bounds how many images a query attack can afford (docs/attacks.md). It prints; it writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from host.attacks import FloatOracle, QuantizedOracle, get_attack, load_float_model
from host.attacks.base import perturbation_norm
from host.backends.backend import ModelIO, NativeBackend
from host.core.data import load_npz_dataset
from host.core.errors import UserError, run_cli
from host.core.paths import ROOT, SHARED_DIR
from host.core.quiet import import_tensorflow_quietly
from host.study.units import configure_threads

FLOAT_MODEL = SHARED_DIR / "models" / "david-goliath" / "cifar_resnet_float.h5"
QUANTIZED_MODELS = {"int16x8": FLOAT_MODEL.with_name("cifar_resnet_int16.tflite"),
                    "int8": FLOAT_MODEL.with_name("cifar_resnet_int8.tflite")}
CIFAR = SHARED_DIR / "data" / "cifar10" / "test_first1017.npz"
DOCS = ROOT / "docs" / "bench.md"
BEGIN, END = "<!-- bench_attacks:begin -->", "<!-- bench_attacks:end -->"
# benchmark row -> (registry attack, label); "pgd" has the study's 20 restarts, "pgd-1" one start
ATTACKS = {
    "pgd": ("pgd", "PGD-20, 20 restarts"),
    "pgd-1": ("pgd", "PGD-20, one start"),
    "cw-l2": ("cw-l2", "C&W-L2"),
    "deepfool": ("deepfool", "DeepFool"),
}
WARMUP = 2  # inputs of the untimed first call per engine


@dataclass(frozen=True)
class Run:
    """One engine's runs of one attack: how many inputs, how long each round took, the result."""

    inputs: int
    rounds: tuple[float, ...]   # seconds per timed round
    x_adv: np.ndarray

    @property
    def seconds(self) -> float:
        return float(np.median(self.rounds))

    @property
    def per_second(self) -> float:
        return self.inputs / self.seconds


@dataclass(frozen=True)
class Row:
    attack: str
    ours: Run
    art: Run
    ours_success: tuple[int, int]       # (fooled, correctly classified) on the inputs ART ran on
    art_success: tuple[int, int]
    ours_success_all: tuple[int, int]   # the same over all inputs ours ran on
    ours_median_l2: float
    art_median_l2: float


def attack_params(row: str, pgd_eps: float) -> dict[str, Any]:
    """The registry attack's parameters for a benchmark row: its defaults, plus PGD's ε."""
    return {"pgd": {"eps": pgd_eps}, "pgd-1": {"eps": pgd_eps, "restarts": 1}}.get(row, {})


def prepare(model: Any, name: str, params: dict[str, Any], engine: str, x: np.ndarray, y: np.ndarray) -> Any:
    """The attack, after an untimed call on WARMUP inputs (tracing, ART's set-up)."""
    attack = get_attack(name, engine=engine, **params)
    attack.generate(model, x[:WARMUP], y[:WARMUP])
    return attack


def timed(attack: Any, model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    x_adv = attack.generate(model, x, y)
    return time.perf_counter() - start, x_adv


def run_both(model: Any, name: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray, art_num: int,
             rounds: int) -> tuple[Run, Run]:
    """Ours on x, ART on x[:art_num], alternating for `rounds` rounds (a load change hits both)."""
    ours, art = (prepare(model, name, params, engine, x, y) for engine in ("ours", "art"))
    times: dict[str, list[float]] = {"ours": [], "art": []}
    for _ in range(rounds):
        seconds, ours_adv = timed(ours, model, x, y)
        times["ours"].append(seconds)
        seconds, art_adv = timed(art, model, x[:art_num], y[:art_num])
        times["art"].append(seconds)
    return (Run(len(x), tuple(times["ours"]), ours_adv), Run(art_num, tuple(times["art"]), art_adv))


def success(model: Any, x_adv: np.ndarray, y: np.ndarray, correct: np.ndarray) -> tuple[int, int]:
    """(inputs fooled, inputs classified correctly before the attack) among these inputs."""
    fooled = (model.predict(x_adv).argmax(axis=1) != y) & correct
    return int(fooled.sum()), int(correct.sum())


def median_l2(model: Any, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, correct: np.ndarray) -> float:
    """Median L2 perturbation of the inputs fooled (nan if none)."""
    fooled = (model.predict(x_adv).argmax(axis=1) != y) & correct
    return float(np.median(perturbation_norm(x, x_adv, "2")[fooled])) if fooled.any() else float("nan")


def bench_attack(model: Any, row: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray, art_num: int) -> Row:
    name = ATTACKS[row][0]
    correct = model.predict(x).argmax(axis=1) == y
    # ART's PGD takes seconds: alternate 3 rounds and take medians; one round of the slow ones.
    ours, art = run_both(model, name, params, x, y, art_num, rounds=3 if name == "pgd" else 1)
    head = slice(0, art_num)
    return Row(
        attack=row, ours=ours, art=art,
        ours_success=success(model, ours.x_adv[head], y[head], correct[head]),
        art_success=success(model, art.x_adv, y[head], correct[head]),
        ours_success_all=success(model, ours.x_adv, y, correct),
        ours_median_l2=median_l2(model, x[head], ours.x_adv[head], y[head], correct[head]),
        art_median_l2=median_l2(model, x[head], art.x_adv, y[head], correct[head]),
    )


def percent(fooled_of: tuple[int, int]) -> str:
    fooled, total = fooled_of
    return f"{100.0 * fooled / max(total, 1):.1f} % ({fooled}/{total})"


def table(rows: Sequence[Row], num: int) -> str:
    lines = [
        "| attack | ours adv/s | ART adv/s | speed-up | success ours | success ART | "
        f"success ours, all {num} | median L2 ours / ART |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        l2 = f"{r.ours_median_l2:.3f} / {r.art_median_l2:.3f}"
        lines.append(
            f"| {ATTACKS[r.attack][1]} | {r.ours.per_second:.1f} ({r.ours.inputs} in {r.ours.seconds:.1f} s) "
            f"| {r.art.per_second:.2f} ({r.art.inputs} in {r.art.seconds:.1f} s) "
            f"| {r.ours.per_second / r.art.per_second:.1f}× | {percent(r.ours_success)} | {percent(r.art_success)} "
            f"| {percent(r.ours_success_all)} | {l2} |"
        )
    return "\n".join(lines)


def explanation(rows: Sequence[Row], args: argparse.Namespace) -> str:
    subset = {r.attack: r.art.inputs for r in rows if r.art.inputs < args.num}
    parts = [
        f"CIFAR-10 ResNet (`{FLOAT_MODEL.relative_to(SHARED_DIR.parent)}`), the first {args.num} inputs of "
        f"`{CIFAR.name}`; the registry's default parameters: PGD-20 ε = {args.pgd_eps:g}, step ε/10, "
        "20 restarts on still-robust inputs (or one start); C&W-L2 10 steps × 10 binary-search steps, c0 = 0.01 "
        "(the study's); DeepFool 100 steps, overshoot 1e-6 (ART's default; the study passes 0.008, "
        "configs/david-goliath-cifar10.toml).",
        "Success = inputs fooled / inputs the float model classified correctly; median L2 over the fooled ones. "
        "adv/s = inputs attacked per second of wall time, after one untimed warm-up call on 2 inputs per engine; "
        "PGD: median of 3 rounds alternating ours and ART (seeded: every round gives the same examples).",
    ]
    if subset:
        which = ", ".join(f"{ATTACKS[a][1]} on the first {n}" for a, n in subset.items())
        parts.append(
            f"ART was run (timed, and its success measured) on a subset of the same inputs: {which}; "
            "the two success columns compare ours and ART on exactly those inputs, the next column is ours "
            f"on all {args.num}. The speed-up is inflated: ART's cost per batch hardly depends on its size."
        )
    return "\n".join(parts)


def write_docs(text: str, path: Path) -> None:
    """Replace the section between the markers in docs/bench.md (append it the first time)."""
    old = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def load_inputs(num: int) -> tuple[Any, np.ndarray, np.ndarray]:
    for path in (FLOAT_MODEL, CIFAR):
        if not path.is_file():
            raise UserError(f"{path} not found", hint="the benchmark needs ../shared (models and data)")
    data = load_npz_dataset(CIFAR)
    if not 1 <= num <= len(data.x):
        raise UserError(f"--num must be in 1..{len(data.x)}")
    return load_float_model(FLOAT_MODEL), data.x[:num], data.y[:num]


def oracle_costs(oracles: dict[str, Any], x: np.ndarray, singles: int = 32) -> list[tuple[str, float, float]]:
    """(oracle name, seconds per query one input per call, seconds per input in one batch of all `x`),
    each oracle warmed up first (tracing, the native build)."""
    rows = []
    for name, oracle in oracles.items():
        oracle(x[:2])
        start = time.perf_counter()
        for i in range(singles):
            oracle(x[i % len(x):i % len(x) + 1])
        one = (time.perf_counter() - start) / singles
        start = time.perf_counter()
        oracle(x)
        rows.append((name, one, (time.perf_counter() - start) / len(x)))
    return rows


def oracle_table(rows: list[tuple[str, float, float]], batch: int) -> str:
    lines = [f"| oracle | one query per call | per input in a batch of {batch} |", "|---|---|---|"]
    lines += [f"| {name} | {one * 1e3:.2f} ms | {per * 1e3:.2f} ms |" for name, one, per in rows]
    return "\n".join(lines)


def study_oracles(model: Any) -> dict[str, Any]:
    """The query attacks' oracles of the study: Keras for float32, the native engine for the others."""
    oracles: dict[str, Any] = {"float32 (Keras)": FloatOracle(model)}
    for precision, path in QUANTIZED_MODELS.items():
        io = ModelIO.from_bytes(path.read_bytes(), str(path))
        oracles[f"{precision} (native)"] = QuantizedOracle.from_backend(NativeBackend(io), io)
    return oracles


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m host.bench_attacks", description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=200, help="CIFAR inputs per attack (default 200)")
    p.add_argument("--art-num", type=int, default=None,
                   help="ART runs on the first N of them only (default: all; success compared on those N)")
    p.add_argument("--art-num-slow", type=int, default=None,
                   help="like --art-num but only for C&W-L2 and DeepFool, ART's slow ones (inflates their speed-up)")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated subset of {','.join(ATTACKS)}")
    p.add_argument("--pgd-eps", type=float, default=0.004, help="PGD's L∞ ε (default 0.004, in the study's range)")
    p.add_argument("--no-write", action="store_true", help="print only; do not update docs/bench.md")
    p.add_argument("--oracles", action="store_true",
                   help="time the query attacks' oracles per precision instead (one query per call, a batch of --num)")
    args = p.parse_args(argv)
    args.attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(args.attacks) - set(ATTACKS))
    if unknown:
        raise UserError(f"--attacks: no benchmark for {', '.join(unknown)}", hint=f"choose from {', '.join(ATTACKS)}")
    return args


def art_num_for(name: str, args: argparse.Namespace) -> int:
    limit = args.art_num_slow if ATTACKS[name][0] != "pgd" and args.art_num_slow else args.art_num
    return min(limit or args.num, args.num)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    import_tensorflow_quietly()
    if args.oracles:
        configure_threads(1)   # one thread, as a study's worker runs them
        model, x, _ = load_inputs(args.num)
        print(oracle_table(oracle_costs(study_oracles(model), x), len(x)))
        return 0
    model, x, y = load_inputs(args.num)
    rows = []
    for row in args.attacks:
        rows.append(bench_attack(model, row, attack_params(row, args.pgd_eps), x, y, art_num_for(row, args)))
        print(f"{ATTACKS[row][1]}: done", file=sys.stderr, flush=True)
    command = "python -m host.bench_attacks " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"`{command.strip()}`, {stamp}, load average {os.getloadavg()[0]:.1f} at the end:\n\n"
            f"{table(rows, args.num)}\n\n{explanation(rows, args)}")
    print(text)
    if not args.no_write:
        write_docs(text, DOCS)
        print(f"written: {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
