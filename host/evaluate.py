"""`python -m host.evaluate`: adversarial robustness of the flashed model, on the chip.

For clean inputs and every attack × ε, each input runs on (a) the float Keras
model, (b) the TFLite Micro reference with the int8-quantized input and (c) the
chip with the same int8 bytes.  Prints accuracies, attack/transfer success,
chip-vs-reference agreement and on-chip cost; writes results/<run-id>/.

Every inference is stored as it arrives in results/<run-id>/results.sqlite (host.study.store);
a dead emulator is restarted (host.backends.pool, also `--devices N` emulators sharing the inputs) and
`--resume <run-id>` finishes a run whose host died. See docs/evaluate.md for every option and
the exact metric definitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host.attacks import attack_class, describe_registry
from host.backends.backend import BACKENDS
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, DEFAULT_FLOAT_MODEL, DEFAULT_MODEL, RESULTS_DIR, ROOT
from host.emulators.launch import board_link
from host.reporting.files import write_results, write_study
from host.reporting.text import chip_mismatches, print_study, print_summary
from host.study.checkpoint import StudyCheckpoint
from host.study.config import Experiment, load_experiment
from host.study.evaluation import (
    DEFAULT_ATTACKS,
    DEFAULT_EPS,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_SEED,
    DEFAULT_WINDOW,
    EvalConfig,
    build_attack,
    config_json,
    evaluate,
)
from host.study.runner import run_experiment
from host.study.store import DB_NAME, ResultsDB

if TYPE_CHECKING:
    pass

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
                   help="finish the interrupted run --out/RUN_ID from its results.sqlite (its options are "
                   "read back; giving a different one is an error); with --config: continue that study from "
                   "its checkpoint (same config), skipping the attacks it finished")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="run N emulator instances of the flashed board and share the inputs (default: 1; "
                   "results are identical)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="W",
                   help="requests in flight per device (protocol pipelining; default: %(default)s)")
    p.add_argument("--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS, metavar="K",
                   help="emulator restarts after a failed device before the run stops (default: %(default)s)")
    p.add_argument("--no-pin", action="store_true",
                   help="let the OS place the emulators (default: each bound to one core, round-robin)")
    p.add_argument("--port", default=None, metavar="URL",
                   help="the board's link instead of booting an emulator: rfc2217://HOST:PORT, socket://HOST:PORT "
                   "or a serial device such as /dev/ttyACM0 (default: $SLINGSHOT_LINK; docs/boards.md)")
    p.add_argument("--place", default=None, metavar="NAME",
                   help="a labgrid place (coordinator: $LG_COORDINATOR): acquired for the run, its serial port "
                   "is the link, released on exit (pip install 'slingshot[lab]'; docs/boards.md)")
    p.add_argument("--config", type=Path, default=None, metavar="STUDY.toml",
                   help="run a configured study (precisions × attacks × ε; docs/experiments.md) instead")
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



def config_from_args(args: argparse.Namespace) -> EvalConfig:
    attacks = parse_attacks(args.attacks)
    eps = parse_eps(args.eps)
    attack_params = parse_attack_params(args.attack_param, attacks)
    for name in attacks:  # bad params fail now, not after minutes of inference
        build_attack(name, eps[0], args.seed, attack_params)
    if args.num is not None and args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}")
    if args.devices > 1 and args.backend != "device":
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
    return EvalConfig(
        model=args.model, float_model=args.float_model, board=args.board, backend=args.backend,
        num=args.num, eps=eps, attacks=attacks, attack_params=attack_params, seed=args.seed,
        dataset=args.dataset, progress=not args.no_progress, devices=args.devices, window=args.window,
        max_restarts=args.max_restarts, pin_cpus=not getattr(args, "no_pin", False),
    )



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
    if args.config is not None:
        return run_study(args, argv)   # a --place or --port is the study's [chip] (run_experiment links it)
    if args.place is not None or args.port is not None:
        option = "--place" if args.place is not None else "--port"
        if args.backend != "device":
            raise UserError(f"{option} needs --backend device (the {args.backend} backend runs on this host)")
        if args.devices > 1:
            raise UserError(f"--devices {args.devices} boots emulators; {option} is one board",
                            hint=f"drop --devices with {option}")
    with board_link(args.place, args.port):
        return _main(args, argv)


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.config is not None:
        return run_study(args, argv)
    if args.quick:
        raise UserError("--quick applies to --config studies only")
    this_argv = list(sys.argv[1:] if argv is None else argv)
    if args.resume is not None:
        return resume_run(args, this_argv)
    config = config_from_args(args)
    run_id = resolve_run_id(args.run_id, config.backend, config.seed)
    out_dir = args.out / run_id
    if (out_dir / DB_NAME).exists():
        raise UserError(f"run '{run_id}' already exists in {args.out}",
                        hint=f"continue it with --resume {run_id}, or choose another --run-id")
    created: list[ResultsDB] = []

    def create(chip_description: str) -> ResultsDB:
        db = ResultsDB.create(out_dir / DB_NAME, config_json(config), this_argv)
        db.lock()
        db.set_meta("chip", chip_description)
        created.append(db)
        return db

    return _run_and_report(config, create, created, run_id, args.out, this_argv)



def resume_run(args: argparse.Namespace, this_argv: list[str]) -> int:
    """--resume RUN_ID: the run's options come from its database; finish what is missing."""
    run_id = args.resume
    if not RUN_ID_PATTERN.match(run_id):
        raise UserError(f"--resume '{run_id}' is not a plain run id", hint="the name of a directory under --out")
    if args.run_id is not None and args.run_id != run_id:
        raise UserError(f"--run-id {args.run_id} conflicts with --resume {run_id}", hint="give only --resume")
    out_dir = args.out / run_id
    db = ResultsDB.open(out_dir / DB_NAME)
    if db.finished:
        raise UserError(f"--resume {run_id}: this run is already finished; its results are in {out_dir}/",
                        hint="nothing to resume; start a new run (another --run-id) to evaluate again")
    db.lock()
    config = resumed_config(args, this_argv, db.config)
    db.set_meta("sessions", str(int(db.meta("sessions", "1") or 1) + 1))
    done = db.count("chip")
    print(f"resuming run {run_id}: {done} chip inference(s) already in {db.path}", file=sys.stderr)
    return _run_and_report(config, db, [db], run_id, args.out, db.argv, resumed_argv=this_argv)



def _run_and_report(config: EvalConfig, db: ResultsDB | Callable[[str], ResultsDB], created: list[ResultsDB],
                    run_id: str, out: Path, argv: list[str], resumed_argv: list[str] | None = None) -> int:

    try:
        document = evaluate(config, db)
    except (UserError, KeyboardInterrupt) as err:
        if created and not created[0].finished:
            kept = created[0].count("chip")
            resume = f"python -m host.evaluate --resume {run_id}" + (f" --out {out}" if out != RESULTS_DIR else "")
            note = f"{kept} chip inference(s) so far are kept in {created[0].path}; continue with: {resume}"
            if isinstance(err, UserError):
                err.hint = f"{err.hint}\n  {note}" if err.hint else note
            else:
                print(note, file=sys.stderr)
        raise
    db_final = created[0]
    out_dir = out / run_id
    document["run"].update({"id": run_id, "argv": argv})
    if resumed_argv is not None:
        document["run"]["resume_argv"] = resumed_argv
    paths = write_results(document, out_dir)
    db_final.set_meta("status", "finished")
    print_summary(document, paths)
    if not document["summary"]["bit_exact"]:
        raise UserError(
            f"the chip's outputs differ from the TFLite Micro reference in "
            f"{document['summary']['mismatched_inferences']} inference(s); details in {paths['report']}",
            exit_code=1,
        )
    return 0



# Options that decide which inferences a run makes: stored in its database, fixed on --resume.
WORK_OPTIONS = ("num", "eps", "attacks", "attack_param", "board", "backend", "model", "float_model", "dataset",
                "seed")



def _given_options(argv: list[str]) -> set[str]:
    """The options the user actually typed (argparse defaults suppressed)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))



def resumed_config(args: argparse.Namespace, argv: list[str], stored: dict[str, Any]) -> EvalConfig:
    """The stored run's config; an option given now that differs from it is an error."""
    def path(text: str | None) -> Path | None:
        return None if text is None else (Path(text) if Path(text).is_absolute() else ROOT / text)

    stored_args = {
        "num": stored["num"], "seed": stored["seed"], "board": stored["board"], "backend": stored["backend"],
        "eps": ",".join(repr(float(e)) for e in stored["eps"]),
        "attacks": ",".join(stored["attacks"]) or "none",
        "attack_param": [f"{a}.{k}={v}" for a, params in stored["attack_params"].items() for k, v in params.items()],
        "model": path(stored["model"]), "float_model": path(stored["float_model"]), "dataset": path(stored["dataset"]),
    }
    given = _given_options(argv) & set(WORK_OPTIONS)
    execution = {k: getattr(args, k) for k in ("devices", "window", "max_restarts", "no_progress", "no_pin")}
    candidate = argparse.Namespace(**{**stored_args, **{k: getattr(args, k) for k in given}}, **execution)
    try:
        config = config_from_args(candidate)
    except UserError as err:
        if not given:
            raise
        raise UserError(f"--resume {args.resume}: {', '.join('--' + k.replace('_', '-') for k in sorted(given))} "
                        f"conflict(s) with the run's options: {err.message}",
                        hint="a resumed run keeps its own options: drop them") from None
    now = config_json(config)

    def norm(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "board": d.get("board") or DEFAULT_BOARD}

    differ = [k for k in sorted(set(now) | set(stored)) if norm(now).get(k) != norm(stored).get(k)]
    if differ:
        files = [k for k in differ if k.endswith("_sha256")]
        options = [k for k in differ if not k.endswith("_sha256")]
        if options:
            detail = "; ".join(f"{k}: run has {stored.get(k)!r}, given {now.get(k)!r}" for k in options)
            raise UserError(f"--resume {args.resume}: options conflict with the run's ({detail})",
                            hint="a resumed run keeps its own options: drop them (only --devices, --window, "
                                 "--max-restarts, --no-progress and --out may be given)")
        raise UserError(f"--resume {args.resume}: file(s) changed since the run started: "
                        + ", ".join(k.removesuffix("_sha256") for k in files),
                        hint="restore them, or start a new run")
    if given:  # equal to the stored values: run with the stored spelling (same metrics document)
        config = config_from_args(argparse.Namespace(**stored_args, **execution))
    return config



def _linked_chip(experiment: Experiment, place: str | None, port: str | None) -> Experiment:
    """--place / --port with --config: the study's [chip] is that board, which runs the flashed firmware."""
    option = f"--place {place}" if place is not None else f"--port {port}"
    if place is not None and port is not None:
        raise UserError("--place and --port both name the board's link", hint="give one of them")
    if not experiment.chip_board:
        raise UserError(f"{option}: the study has no [chip] board", hint="add [chip] board = \"…\" to the config")
    if len(experiment.chip_precisions) > 1 or any(d.on_chip for d in experiment.defenses):
        raise UserError(f"{option} is one board with one firmware: the study needs one [chip] precisions and "
                        "no on_chip defense", hint="flash the firmware of that precision on it (make flash MODEL=…)")
    return dataclasses.replace(experiment, chip_place=place, chip_port=port)


def run_study(args: argparse.Namespace, argv: list[str] | None) -> int:
    experiment = load_experiment(args.config, quick=args.quick)
    if args.place is not None or args.port is not None:
        experiment = _linked_chip(experiment, args.place, args.port)
    if args.resume is not None:
        if args.run_id is not None and args.run_id != args.resume:
            raise UserError(f"--run-id {args.run_id} conflicts with --resume {args.resume}", hint="give only --resume")
        run_id = resolve_run_id(args.resume, "", 0)
    else:
        run_id = resolve_run_id(args.run_id, experiment.name + ("-quick" if args.quick else ""), experiment.seed)
    checkpoint = StudyCheckpoint.start(args.out / run_id / "checkpoint", experiment, resume=args.resume is not None)
    print(f"run {run_id}: each finished attack is kept in {checkpoint.directory}; if the run stops, continue it "
          f"with: python -m host.evaluate --config {args.config}{' --quick' if args.quick else ''} "
          f"--resume {run_id}" + (f" --out {args.out}" if args.out != RESULTS_DIR else ""), file=sys.stderr)
    document = run_experiment(experiment, progress=not args.no_progress, checkpoint=checkpoint)
    document["run"].update({"id": run_id, "argv": list(sys.argv[1:] if argv is None else argv)})
    paths = write_study(document, args.out / run_id)
    print_study(document, paths)
    mismatches = chip_mismatches(document)
    failed = [f"attack {f['attack']}" for f in document["summary"].get("failed_attacks", [])]
    failed += [f"defense {f['defense']}" for f in document["summary"].get("failed_defenses", [])]
    if failed:
        raise UserError(f"{len(failed)} part(s) of the study failed ({', '.join(failed)}); the other results are "
                        f"in {paths['report'].parent}", hint=f"continue it with --resume {run_id}", exit_code=1)
    if mismatches:
        raise UserError(f"the chip's outputs differ from the TFLite Micro reference in {mismatches} inference(s); "
                        f"details in {paths['report']}", exit_code=1)
    return 0



if __name__ == "__main__":
    sys.exit(run_cli(main))
