"""`python -m host.evaluate`: adversarial robustness of the flashed model, on the chip.

For clean inputs and every attack × ε, each input runs on (a) the float Keras
model, (b) the TFLite Micro reference with the quantized input and (c) the
chip with the same bytes.  Prints accuracies, attack/transfer success,
chip-vs-reference agreement and on-chip cost; writes results/<run-id>/.

The flags describe a study, exactly as a config file does (`--config study.toml`: precisions ×
attacks × ε × defenses): both run through one pipeline (host.study.runner), split into units run
on a Dask cluster (a LocalCluster by default, `--scheduler` an existing one, `--workers 0` this
process; host.study.cluster), each unit journaled as it arrives in results/<run-id>/results.sqlite
(host.study.journal), so `--resume <run-id>` finishes a run whose client died. See docs/evaluate.md,
docs/experiments.md and docs/cluster.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from host.attacks import attack_class, describe_registry
from host.backends.backend import BACKENDS, ModelIO
from host.core.boards import load_board
from host.core.data import digits_test_set, load_npz_dataset
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, RESULTS_DIR
from host.emulators.launch import check_one_link, cycles_over_link, require_model, require_protocol_mode
from host.link.device import LINK_ENV
from host.link.images import read_flashed
from host.link.probe import find_serial_port
from host.reporting.files import write_study
from host.reporting.text import chip_mismatches, print_study, print_summary
from host.study.cluster import check_where, open_executor
from host.study.config import FLOAT, AttackSpec, Experiment, SliceSpec, load_experiment
from host.study.evaluation import (
    DEFAULT_ATTACKS,
    DEFAULT_EPS,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_SEED,
    DEFAULT_WINDOW,
    add_flag_view,
)
from host.study.journal import DB_NAME, Journal, check_writable_dir, experiment_fingerprint
from host.study.runner import check_placement, make_attack, prepare, run_experiment
from host.study.units import configure_threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import: no C++ log spam

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m host.evaluate",
        description="Evaluate adversarial robustness of the flashed int8 model on the chip "
        "against the float model and the TFLite Micro reference.",
        epilog="Attacks: run with --list-attacks.  Details: docs/evaluate.md",
    )
    p.add_argument("--num", type=int, default=None, metavar="N",
                   help="evaluate the first N samples of the test set (default: all)")
    p.add_argument("--eps", default=",".join(map(str, DEFAULT_EPS)), metavar="E1,E2,...",
                   help="L∞ radii in input units, comma-separated (default: %(default)s)")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), metavar="A1,A2,...",
                   help="attacks from the registry, comma-separated, or 'none' (default: %(default)s)")
    p.add_argument("--attack-param", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                   help="override an attack parameter, e.g. pgd.max_iter=40 (repeatable)")
    p.add_argument("--list-attacks", action="store_true", help="list the attack registry and exit")
    p.add_argument("--board", default=None,
                   help=f"board to evaluate on (default: the flashed one, normally {DEFAULT_BOARD})")
    p.add_argument("--backend", choices=BACKENDS, default="device",
                   help="where the int8 model runs: device (the board, default), native (the same "
                   "C engine built for the host) or reference (TFLite Micro; no chip)")
    p.add_argument("--cycles", action="store_true",
                   help="also estimate CPU cycles per inference with QEMU's cycle plugin (emulated QEMU boards whose "
                   "CPU has a timing model; up to 2x slower chip runs; docs/performance.md)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, metavar="M.tflite",
                   help="the int8 model that was flashed (default: %(default)s)")
    p.add_argument("--float-model", type=Path, default=DEFAULT_FLOAT_MODEL, metavar="F.keras",
                   help="the float model attacks are crafted on (default: %(default)s)")
    p.add_argument("--dataset", type=Path, default=None, metavar="D.npz",
                   help="an .npz with x (NHWC) and y; default: the digits test split")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for attack randomness (default: 0)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                   help="results directory (default: results/)")
    p.add_argument("--run-id", default=None, help="subdirectory name (default: date-time-backend-seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="finish the interrupted run --out/RUN_ID: only the units its results.sqlite lacks are "
                   "computed (a flag run's options are read back; with --config: the same config)")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="without --workers: N worker processes, each with its own emulator of the flashed board "
                   "(default: one per core; results are identical)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="W",
                   help="requests in flight per device (protocol pipelining; default: %(default)s)")
    p.add_argument("--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS, metavar="K",
                   help="emulator restarts after a failed device before the run stops (default: %(default)s)")
    p.add_argument("--no-pin", action="store_true",
                   help="kept for old scripts, no effect: the emulators run unbound in the Dask worker processes")
    p.add_argument("--port", default=None, metavar="URL",
                   help="the board's link instead of booting an emulator: rfc2217://HOST:PORT, socket://HOST:PORT "
                   "or a serial device such as /dev/ttyACM0 (default: $SLINGSHOT_LINK; docs/boards.md)")
    p.add_argument("--place", default=None, metavar="NAME",
                   help="a labgrid place (coordinator: $LG_COORDINATOR): acquired for the run, its serial port "
                   "is the link, released on exit (pip install 'slingshot[lab]'; docs/boards.md)")
    p.add_argument("--config", type=Path, default=None, metavar="STUDY.toml",
                   help="run a configured study (precisions × attacks × ε; docs/experiments.md) instead")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the Dask LocalCluster this command starts (default: one "
                   "per core; 0: every unit in this process, no Dask; docs/cluster.md)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the units on this existing Dask cluster (docs/cluster.md)")
    p.add_argument("--quick", action="store_true", help="with --config: the config's [quick] overrides (fewer samples)")
    return p


def parse_eps(text: str) -> tuple[float, ...]:
    values: list[float] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"--eps: '{item}' is not a number", hint="e.g. --eps 0.05,0.1,0.2") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--eps: {item} must be a positive finite number (input units, e.g. 0.1)")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError("--eps: give at least one radius", hint="e.g. --eps 0.05,0.1,0.2")
    return tuple(values)


FLAG_INPUT_RANGE = (0.0, 1.0)      # the flag path's datasets (experiment_from_args): images scaled to 0..1


def check_linf_eps(attacks: Sequence[str], eps: Sequence[float], input_range: tuple[float, float]) -> None:
    """An L∞ radius at or above the whole input range allows any input: an error, not a silent no-op sweep."""
    span = input_range[1] - input_range[0]
    linf = [name for name in attacks if attack_class(name).norm == "inf" and attack_class(name).bounded
            and any(p.name == "eps" for p in attack_class(name).params_spec)]
    too_big = [e for e in eps if e >= span]
    if linf and too_big:
        raise UserError(f"--eps: {too_big[0]:g} covers the whole input range [{input_range[0]:g}, {input_range[1]:g}] "
                        f"of the L∞ attack(s) {', '.join(linf)}",
                        hint=f"--eps is in input units: give radii below {span:g}, e.g. --eps 0.03,0.1")


def parse_attacks(text: str) -> tuple[str, ...]:
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    if names == ["none"]:
        return ()
    if not names:
        raise UserError("--attacks: give at least one attack, or 'none' for clean accuracy only")
    for name in names:
        attack_class(name)  # UserError listing the registry
    return tuple(dict.fromkeys(names))


def parse_attack_params(items: Sequence[str], attacks: Sequence[str]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {}
    for item in items:
        match = re.fullmatch(r"\s*([\w-]+)\.(\w+)\s*=\s*(.+?)\s*", item)
        if not match:
            raise UserError(f"--attack-param '{item}': expected ATTACK.KEY=VALUE, e.g. pgd.max_iter=40")
        name, key, value = match.group(1).lower(), match.group(2), match.group(3)
        if name not in attacks:
            raise UserError(f"--attack-param '{item}': attack '{name}' is not in --attacks {','.join(attacks)}")
        if key in ("eps", "seed"):
            raise UserError(f"--attack-param '{item}': set {key} with --{key}")
        params.setdefault(name, {})[key] = value
    return params


def check_flags(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[float, ...], dict[str, dict[str, str]]]:
    """The flags' own checks (before any model is loaded); returns attacks, eps and attack parameters."""
    attacks = parse_attacks(args.attacks)
    eps = parse_eps(args.eps)
    attack_params = parse_attack_params(args.attack_param, attacks)
    check_linf_eps(attacks, eps, FLAG_INPUT_RANGE)
    for name in attacks:  # bad params fail now, not after minutes of inference
        first = _attack_eps(name, eps)[0]
        make_attack(AttackSpec(name, (first,), attack_params.get(name, {})), first, args.seed)
    if args.num is not None and args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.devices is not None and args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}")
    if (args.devices or 1) > 1 and args.backend != "device":
        raise UserError(f"--devices {args.devices} needs --backend device (the {args.backend} backend is "
                        "one host process)")
    if args.window < 1:
        raise UserError(f"--window must be at least 1, got {args.window}")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    _check_model_path(args.model)
    if not args.float_model.is_file():
        raise UserError(
            f"float model not found: {args.float_model}",
            hint="pass --float-model PATH.keras (the float model the .tflite was converted from)",
        )
    return attacks, eps, attack_params


def experiment_from_args(args: argparse.Namespace) -> tuple[Experiment, ModelIO, dict[str, Any]]:
    """The study the flags describe: the flashed model in its one precision, its float model, the
    attacks × ε, and its chip (the flashed board, or --backend native/reference)."""
    attacks, eps, attack_params = check_flags(args)
    model = ModelIO.from_bytes(args.model.read_bytes(), str(args.model))
    precision = {"int8": "int8", "int16": "int16x8"}.get(model.input.dtype)
    if precision is None:
        raise UserError(f"--model {args.model}: a {model.input.dtype} input; the evaluator takes int8 or int16x8 "
                        "models", hint="quantize it with python -m host.quantize")
    dataset, n_all, info = _flag_dataset(args)
    board = args.board or DEFAULT_BOARD
    place, port = _flag_link(args, board)
    firmware = _flashed_firmware(model, board) if args.backend == "device" and place is None and port is None else None
    specs = tuple(AttackSpec(name, _attack_eps(name, eps), {**attack_params.get(name, {})}) for name in attacks)
    experiment = Experiment(
        source=Path("<flags>"), name="evaluate", seed=args.seed, float_model=args.float_model.resolve(),
        given={precision: args.model.resolve()}, precisions=(FLOAT, precision), dataset=dataset,
        input_range=(0.0, 1.0), representative=None, chip_board=board, chip_precisions=(precision,),
        chip_num=None, attacks=specs, chip_place=place, chip_port=port, chip_backend=args.backend,
        chip_firmware=firmware, chip_cycles=bool(getattr(args, "cycles", False)))
    info.update(board=board, n=n_all, chip=f"{board} ({args.backend})" if args.backend != "device" else board)
    return experiment, model, info


def _attack_eps(name: str, eps: tuple[float, ...]) -> tuple[float | None, ...]:
    return eps if any(p.name == "eps" for p in attack_class(name).params_spec) else (None,)


def _flag_dataset(args: argparse.Namespace) -> tuple[SliceSpec, int, dict[str, Any]]:
    if args.dataset is None:
        dataset = digits_test_set()
        path = Path("builtin:digits-test")
    else:
        dataset = load_npz_dataset(args.dataset)
        path = args.dataset.resolve()
    if args.num is not None and args.num > len(dataset):
        raise UserError(f"--num {args.num} is more than the {len(dataset)} samples of {dataset.name}",
                        hint=f"use --num 1..{len(dataset)} (or omit it for all)")
    meta = {k: v for k, v in dataset.meta.items() if k != "path"}
    return SliceSpec(path, 0, args.num), len(dataset), {"name": dataset.name, "meta": meta}


def _flag_link(args: argparse.Namespace, board: str) -> tuple[str | None, str | None]:
    """(labgrid place, link URL) of a flag run's chip: --place, --port, else $SLINGSHOT_LINK, else for a real
    board flashed from this machine the serial port host.flash recorded (or found again by the board file's
    USB ids); (None, None): an emulator of the flashed firmware, or a worker that offers the board."""
    check_one_link(args.place, args.port)
    option = "--place" if args.place is not None else "--port" if args.port is not None else None
    if option is not None:
        if args.backend != "device":
            raise UserError(f"{option} needs --backend device (the {args.backend} backend runs on this host)")
        if (args.devices or 1) > 1:
            raise UserError(f"--devices {args.devices} boots emulators; {option} is one board",
                            hint=f"drop --devices with {option}")
        if args.cycles:
            raise cycles_over_link(option)
        return args.place, args.port
    if args.backend != "device":
        return None, None
    return None, os.environ.get(LINK_ENV) or _flashed_port(board)


def _flashed_port(board: str) -> str | None:
    """The serial port of a real board flashed from this machine (build/flash/<board>/), else None."""
    spec = load_board(board)
    if spec.emulated:
        return None
    try:
        image = read_flashed(board)
    except UserError:
        return None   # flashed elsewhere: a worker that offers the board runs it (docs/cluster.md)
    require_protocol_mode(image)
    return image.port or find_serial_port(spec)


def _flashed_firmware(model: ModelIO, board: str) -> Path | None:
    """The firmware flashed for an emulated board (checked to run `model`); None for a real board."""
    if not load_board(board).emulated:
        return None
    image = read_flashed(board)
    require_protocol_mode(image)
    require_model(image, model.sha256)
    return image.elf


def _check_model_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"model file not found: {path}", hint="pass --model PATH.tflite (the flashed model)")
    if path.is_dir() or path.suffix != ".tflite":
        raise UserError(f"--model must be a .tflite file, got {path}", hint="the int8 model given to make flash")


def resolve_run_id(run_id: str | None, backend: str, seed: int) -> str:
    if run_id is None:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{backend}-seed{seed}"
    if not RUN_ID_PATTERN.match(run_id):
        raise UserError(
            f"--run-id '{run_id}' is not a plain name",
            hint="letters, digits, '.', '_' and '-' only (it names a directory under --out)",
        )
    return run_id


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_attacks:
        print(describe_registry())
        return 0
    this_argv = list(sys.argv[1:] if argv is None else argv)
    check_where(args.scheduler, args.workers)   # before the model, the flashed image or TensorFlow are read
    if args.config is not None:
        return run_study(args, this_argv)   # a --place or --port is the study's [chip] (run_context links it)
    if args.quick:
        raise UserError("--quick applies to --config studies only")
    if args.resume is not None:
        args = resumed_args(args, this_argv)
    experiment, model, info = experiment_from_args(args)
    run_id = args.resume or resolve_run_id(args.run_id, args.backend, args.seed)
    return run(experiment, args, run_id, args.stored_argv if args.resume else this_argv,
               flag_view=(model, info), label=f"python -m host.evaluate --resume {run_id}")


# Options that decide which inferences a run makes: fixed on --resume (the run's own are read back).
WORK_OPTIONS = ("num", "eps", "attacks", "attack_param", "board", "backend", "model", "float_model", "dataset",
                "seed", "run_id", "cycles")


def _given_options(argv: list[str]) -> set[str]:
    """The options the user actually typed (argparse defaults suppressed)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def resumed_args(args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """--resume RUN_ID: the run's own options, read back from its journal; only where and how it runs
    (--workers, --scheduler, --devices, --window, --max-restarts, --no-progress, --out) may be given."""
    run_id = args.resume
    if not RUN_ID_PATTERN.match(run_id):
        raise UserError(f"--resume '{run_id}' is not a plain run id", hint="the name of a directory under --out")
    given = sorted((_given_options(argv) & set(WORK_OPTIONS)) - {"run_id"} if args.run_id in (None, run_id)
                   else _given_options(argv) & set(WORK_OPTIONS))
    if given:
        raise UserError(f"--resume {run_id}: {', '.join('--' + k.replace('_', '-') for k in given)} would change "
                        "the run", hint="a resumed run keeps its own options: drop them (only --workers, "
                        "--scheduler, --devices, --window, --max-restarts, --no-progress, --port, --place and --out "
                        "may be given)")
    stored = Journal.stored_argv(args.out / run_id / DB_NAME, run_id)
    resumed = build_parser().parse_args(stored)
    if resumed.config is not None:
        study = f"--config {resumed.config}{' --quick' if resumed.quick else ''}"
        raise UserError(f"--resume {run_id}: the run is a study, started with {study}",
                        hint=f"resume it with: python -m host.evaluate {study} --resume {run_id}"
                             + (f" --out {args.out}" if args.out != RESULTS_DIR else ""))
    for name in ("workers", "scheduler", "devices", "window", "max_restarts", "no_progress", "out", "resume",
                 "port", "place"):
        setattr(resumed, name, getattr(args, name))
    resumed.stored_argv = stored
    return resumed


def _linked_chip(experiment: Experiment, place: str | None, port: str | None, cycles: bool,
                 option: str | None = None) -> Experiment:
    """--place / --port (or $SLINGSHOT_LINK) with --config: the study's [chip] is that board, which runs the
    flashed firmware."""
    option = option or (f"--place {place}" if place is not None else f"--port {port}")
    check_one_link(place, port)
    if cycles:
        raise cycles_over_link(option)
    if not experiment.chip_board:
        raise UserError(f"{option}: the study has no [chip] board", hint="add [chip] board = \"…\" to the config")
    if len(experiment.chip_precisions) > 1 or any(d.on_chip for d in experiment.defenses):
        raise UserError(f"{option} is one board with one firmware: the study needs one [chip] precisions and "
                        "no on_chip defense", hint="flash the firmware of that precision on it (make flash MODEL=…)")
    return dataclasses.replace(experiment, chip_place=place, chip_port=port)


# Flags that describe a flag run's study; with --config the config decides them (where, in its terms).
CONFIG_DECIDES = {"num": "[dataset] num", "eps": "each [[attack]]'s eps", "attacks": "the [[attack]] tables",
                  "attack_param": "the [[attack]] tables' parameters", "board": "[chip] board",
                  "backend": "[chip] (a config's chip is the board itself)", "model": "[model] int8 / int16x8",
                  "float_model": "[model] float", "dataset": "[dataset] path", "seed": "[experiment] seed",
                  "devices": "--workers N or [cluster] workers"}


def _check_config_flags(config: Path, argv: list[str]) -> None:
    """A flag the config decides is refused rather than silently ignored."""
    typed = _given_options(argv)
    given = [name for name in CONFIG_DECIDES if name in typed]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        where = "; ".join(f"--{name.replace('_', '-')}: {CONFIG_DECIDES[name]}" for name in given)
        raise UserError(f"{flags} cannot be combined with --config {config}: the config decides it",
                        hint=f"edit the config ({where}), or use --quick for its CI-sized variant")


def run_study(args: argparse.Namespace, this_argv: list[str]) -> int:
    if args.resume is not None:
        Journal.check_exists(args.out / args.resume / DB_NAME)
    _check_config_flags(args.config, this_argv)
    experiment = load_experiment(args.config, quick=args.quick)
    if args.place is not None or args.port is not None:
        experiment = _linked_chip(experiment, args.place, args.port, cycles=args.cycles)
    elif os.environ.get(LINK_ENV) and experiment.chip_board and experiment.chip_backend == "device" and \
            experiment.chip_place is None and experiment.chip_port is None:
        experiment = _linked_chip(experiment, None, os.environ[LINK_ENV], cycles=args.cycles, option=f"${LINK_ENV}")
    if args.cycles:
        experiment = dataclasses.replace(experiment, chip_cycles=True)   # as [chip] cycles = true
    if args.resume is not None:
        if args.run_id is not None and args.run_id != args.resume:
            raise UserError(f"--run-id {args.run_id} conflicts with --resume {args.resume}", hint="give only --resume")
        run_id = resolve_run_id(args.resume, "", 0)
    else:
        run_id = resolve_run_id(args.run_id, experiment.name + ("-quick" if args.quick else ""), experiment.seed)
    resume = (f"python -m host.evaluate --config {args.config}{' --quick' if args.quick else ''}"
              f"{' --cycles' if args.cycles else ''} --resume {run_id}")
    return run(experiment, args, run_id, this_argv, label=resume)


def where_to_run(experiment: Experiment, args: argparse.Namespace, flags: bool) -> tuple[str | None, int | None]:
    """(scheduler, workers) for open_executor: --scheduler or --workers (not both), else the config's
    [cluster], else --devices (a flag run), else one process for a host backend, else a LocalCluster."""
    if args.scheduler is not None or args.workers is not None:
        return args.scheduler, args.workers   # the command line wins over [cluster]; both: open_executor refuses
    if experiment.cluster_scheduler is not None:
        return experiment.cluster_scheduler, None
    workers = experiment.cluster_workers
    if workers is None and flags and args.devices is not None:
        workers = args.devices
    if workers is None and experiment.chip_backend != "device":
        workers = 0   # --backend native/reference: host work only, one process is enough
    return None, workers


def run(experiment: Experiment, args: argparse.Namespace, run_id: str, argv: list[str],
        flag_view: tuple[ModelIO, dict[str, Any]] | None = None, label: str = "") -> int:
    """Any run, flags or config: checked, planned into units, run where the flags or [cluster] say,
    journaled, reported (metrics.json, report.md, report.html)."""
    out_dir = args.out / run_id
    check_writable_dir(args.out)
    if args.resume is None and (out_dir / DB_NAME).exists():
        raise UserError(f"run '{run_id}' already exists in {args.out}",
                        hint=f"continue it with --resume {run_id}, or choose another --run-id")
    scheduler, workers = where_to_run(experiment, args, flags=flag_view is not None)
    configure_threads()   # before TensorFlow starts: one thread, as on every worker (byte-identical floats)
    resume_hint = label + (f" --out {args.out}" if args.out != RESULTS_DIR else "")
    with open_executor(scheduler, workers) as executor:
        executor.warm()   # the workers load TensorFlow while this process checks the run
        prepared = prepare(experiment)   # data, models and attacks checked before the run directory exists
        check_placement(executor, experiment, prepared[4])
        journal = Journal.start(out_dir / DB_NAME, experiment_fingerprint(experiment), argv,
                                resume=args.resume is not None)
        print(f"run {run_id}: every finished unit is kept in {journal.path}; if the run stops, continue it "
              f"with: {resume_hint}", file=sys.stderr)
        try:
            document = run_experiment(experiment, progress=not args.no_progress, journal=journal,
                                      executor=executor, window=args.window, max_restarts=args.max_restarts,
                                      prepared=prepared)
            document["run"].update({"id": run_id, "argv": argv, "sessions": journal.sessions})
            if flag_view is not None:
                add_flag_view(document, experiment, flag_view[0], prepared[1], prepared[0], flag_view[1])
            else:
                document.pop("_sets", None)
            paths = write_study(document, out_dir)
            failed = [f"attack {f['attack']}" for f in document["summary"].get("failed_attacks", [])]
            failed += [f"defense {f['defense']}" for f in document["summary"].get("failed_defenses", [])]
            if not failed:
                journal.finish()
        except (UserError, KeyboardInterrupt) as err:
            note = f"the units finished so far are kept in {journal.path}; continue with: {resume_hint}"
            if isinstance(err, UserError):
                err.hint = f"{err.hint}\n  {note}" if err.hint else note
            else:
                print(note, file=sys.stderr)
            raise
        finally:
            journal.close()
    if flag_view is not None:
        print_summary(document, paths)
    else:
        print_study(document, paths)
    mismatches = chip_mismatches(document)
    if failed:
        raise UserError(f"{len(failed)} part(s) of the study failed ({', '.join(failed)}); the other results are "
                        f"in {out_dir}", hint=f"continue it with {resume_hint}", exit_code=1)
    if mismatches:
        raise UserError(f"the chip's outputs differ from the TFLite Micro reference in {mismatches} inference(s); "
                        f"details in {paths['report']}", exit_code=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
