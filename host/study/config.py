"""Experiment configuration: one TOML file describes a whole study (docs/experiments.md).

    [experiment]  name, seed
    [model]       float = "m.h5", int8 = "m_int8.tflite", int16x8 = "...", precisions = [...]
    [dataset]     path, start, num, input_range, [dataset.representative] path/start/num
    [chip]        board, precisions, num (default: every input), place (a labgrid place running the board:
                  docs/boards.md)
    [cluster]     scheduler = "tcp://host:8786" (an existing Dask cluster) or workers = N (a LocalCluster;
                  0: serially in this process), shard = 50 (inputs per work unit)
    [[attack]]    name, eps = [...], other parameters of the attack
    [[defense]]   name, its parameters (data for train-based ones; float/int8/int16x8 files for trained-model),
                  on_chip = true: its firmware stage on the [chip]
    [quick]       overrides used by --quick, e.g. dataset_num = 50

Relative paths are relative to the directory of the config file. Everything is
checked here, before any long work starts: missing files, unknown sections and keys,
unknown attacks, parameters out of range, unknown precisions or boards.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.attacks import attack_class, get_attack
from host.core.boards import load_board
from host.core.errors import UserError
from host.defenses import defense_class, get_defense
from host.quantization.bitwidth import MAX_BITS, MIN_BITS, parse_bitwidths

FLOAT = "float32"
QUANTIZED_PRECISIONS = ("int16x8", "int8")
PRECISION_ALIASES = {"float": FLOAT, "float32": FLOAT, "int8": "int8", "int16": "int16x8", "int16x8": "int16x8",
                     "16x8": "int16x8"}
SECTIONS = {"experiment", "model", "dataset", "chip", "cluster", "attack", "defense", "bitwidth", "quick"}
# The keys of every fixed-key table ([[attack]] and [[defense]] parameters are checked by their registries).
KEYS: dict[str, tuple[str, ...]] = {
    "experiment": ("name", "seed"),
    "model": ("float", "int8", "int16x8", "int16", "precisions"),
    "dataset": ("path", "start", "num", "input_range", "representative"),
    "dataset.representative": ("path", "start", "num"),
    "chip": ("board", "precisions", "num", "place", "cycles"),
    "cluster": ("scheduler", "workers", "shard"),
    "bitwidth": ("bits", "modes", "qat"),
}
SLICE_KEYS = ("path", "start", "num")  # a defense's `data` table
# What a query attack's `target` precision is queried through (`via`): our engine built for the host (the
# default: bit-exact with TFLite Micro, 2-3x faster on the CIFAR ResNet), TFLite Micro's interpreter
# itself, or the board.
ORACLES = ("native", "reference", "chip")
QUICK_KEYS = ("train_defenses", "train_qat", "skip_attacks", "attack_num", "attack_params")
OVERRIDABLE = ("experiment", "model", "dataset", "chip", "cluster")  # [quick] <section>_<key> overrides
DEFAULT_SHARD = 50


@dataclass(frozen=True)
class AttackSpec:
    name: str
    eps: tuple[float | None, ...]      # None: the attack's own default (minimal-perturbation attacks)
    params: dict[str, Any] = field(default_factory=dict)
    # How results name it when one [[attack]] queries several targets (from params' target: out of repr,
    # so that the journal's fingerprint of a study without it stays what it was).
    label: str = field(default="", repr=False)

    @property
    def shown(self) -> str:
        """The attack's name in results: its name, or name@target for one of several query targets."""
        return self.label or self.name


@dataclass(frozen=True)
class DefenseSpec:
    name: str
    kind: str                          # "preprocess" | "train" | "model"
    params: dict[str, Any] = field(default_factory=dict)
    train_data: SliceSpec | None = None
    on_chip: bool = False              # also run its firmware pre-processing stage on the [chip] (docs/defenses.md)
    given_label: str = field(default="", repr=False)   # [[defense]] label = "…" (out of repr: the fingerprint)

    @property
    def label(self) -> str:
        """How results name it: its `label` if the config gives one; else the name and the parameters the
        config set, e.g. feature-squeezing(bit_depth=4); a trained model its float file's name."""
        if self.given_label:
            return self.given_label
        if self.kind == "model":
            return str(self.params.get("label") or Path(str(self.params["float"])).stem)
        files = defense_class(self.name).file_params
        shown = ", ".join(f"{k}={Path(str(v)).name if k in files else v}" for k, v in self.params.items())
        return f"{self.name}({shown})" if shown else self.name


@dataclass(frozen=True)
class SliceSpec:
    path: Path
    start: int = 0
    num: int | None = None


@dataclass(frozen=True)
class Experiment:
    source: Path
    name: str
    seed: int
    float_model: Path
    given: dict[str, Path]                 # precision -> existing .tflite
    precisions: tuple[str, ...]            # always starts with float32
    dataset: SliceSpec
    input_range: tuple[float, float]
    representative: SliceSpec | None
    chip_board: str | None
    chip_precisions: tuple[str, ...]
    chip_num: int | None
    attacks: tuple[AttackSpec, ...]
    defenses: tuple[DefenseSpec, ...] = ()
    bitwidths: tuple[Any, ...] = ()         # host.quantization.bitwidth.BitWidth: simulated 2..8-bit models
    # Where the [chip] is, not what it computes: left out of repr, hence of the journal's fingerprint
    # (a study may be resumed on another place or port).
    chip_place: str | None = field(default=None, repr=False)   # a labgrid place whose board runs the flashed firmware
    chip_port: str | None = field(default=None, repr=False)    # or a link URL (host.evaluate --config … --port URL)
    # Inputs per work unit: it decides the per-unit seeds, hence what is computed (in repr and the fingerprint).
    shard: int = DEFAULT_SHARD
    # Where the work runs, not what it computes: left out of repr like chip_place.
    cluster_scheduler: str | None = field(default=None, repr=False)  # an existing Dask cluster, tcp://host:port
    cluster_workers: int | None = field(default=None, repr=False)    # a LocalCluster of N; 0: serially, no Dask
    # The flags of `python -m host.evaluate` (no config file): the chip's backend ("device", "native" engine on
    # the host, or the TFLite Micro "reference") and the firmware flashed for the board, booted as it is.
    chip_backend: str = "device"
    chip_firmware: Path | None = None
    # [chip] cycles / --cycles: estimated CPU cycles beside instructions (QEMU's cycle plugin). Out of repr so
    # that runs without it keep their fingerprint; journal.experiment_fingerprint adds it when set.
    chip_cycles: bool = field(default=False, repr=False)
    # [bitwidth] qat: quantization-aware training of every bit width (out of repr like chip_cycles;
    # journal.experiment_fingerprint adds it when set).
    qat: QatSpec | None = field(default=None, repr=False)


@dataclass(frozen=True)
class QatSpec:
    """[bitwidth] qat = {data = {path, start, num}, epochs, learning_rate, batch_size}; epochs and
    learning_rate may be tables by bit count ({default = 5, 2 = 20}): by_bits holds the widths whose
    schedule differs from the default, as (bits, epochs, learning rate)."""

    data: SliceSpec
    epochs: int = 3
    learning_rate: float = 1e-4
    batch_size: int = 64
    # out of repr, so that a study without it keeps its fingerprint (journal.experiment_fingerprint adds it)
    by_bits: tuple[tuple[int, int, float], ...] = field(default=(), repr=False)
    # "cosine": the learning rate decays to 0 over the training (else constant); out of repr like by_bits
    decay: str = field(default="none", repr=False)

    def schedule(self, bits: int) -> tuple[int, float]:
        """Epochs and learning rate of the b-bit widths."""
        for b, epochs, rate in self.by_bits:
            if b == bits:
                return epochs, rate
        return self.epochs, self.learning_rate


QAT_KEYS = ("data", "epochs", "learning_rate", "batch_size", "learning_rate_decay")
QAT_DECAYS = ("none", "cosine")


def load_experiment(path: Path | str, quick: bool = False) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}", hint="e.g. --config configs/david-goliath-cifar10.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    try:
        return _parse(doc, path, quick)
    except UserError as err:
        raise UserError(f"{path}: {err.message}", hint=err.hint or "see docs/experiments.md") from None


def _parse(doc: dict[str, Any], source: Path, quick: bool) -> Experiment:
    unknown = set(doc) - SECTIONS
    if unknown:
        raise UserError(f"unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    base = source.resolve().parent
    _check_quick(doc)  # also without --quick: a typo there is found before a quick run needs it
    if quick:
        doc = _apply_quick(doc)
    exp, model, data, chip, cluster = (_table(doc, k) for k in ("experiment", "model", "dataset", "chip", "cluster"))
    for section, table in (("experiment", exp), ("model", model), ("dataset", data), ("chip", chip),
                           ("cluster", cluster)):
        _check_keys(table, KEYS[section], f"[{section}]")
    precisions = _precisions(model.get("precisions", ["float32", "int16x8", "int8"]), "model.precisions")
    given = {PRECISION_ALIASES[k]: _existing(base, model[k], f"model.{k}")
             for k in ("int8", "int16x8", "int16") if k in model}
    representative = None
    if "representative" in data:
        rep = _table(data, "representative", "dataset.representative")
        _check_keys(rep, KEYS["dataset.representative"], "[dataset.representative]")
        representative = SliceSpec(_existing(base, _required(rep, "path", "dataset.representative"),
                                             "dataset.representative.path"),
                                   _int(rep.get("start", 0), "dataset.representative.start", 0),
                                   _int(rep.get("num", 500), "dataset.representative.num", 1))
    if any(d.get("on_chip") is True for d in _table_list(doc, "defense")) and not chip.get("board"):
        raise UserError("a [[defense]] has on_chip = true but there is no [chip] board to run it on",
                        hint="add [chip] board = \"mps2-an386\" (and precisions), or drop on_chip")
    scheduler, workers, shard = _cluster(cluster)
    missing = [p for p in precisions if p != FLOAT and p not in given]
    if missing and representative is None:
        raise UserError(f"precision(s) {missing} have no .tflite in [model] and there is no [dataset.representative] "
                        "to quantize them from")
    return Experiment(
        source=source,
        name=str(exp.get("name", source.stem)),
        seed=_int(exp.get("seed", 0), "experiment.seed", 0),
        float_model=_existing(base, _required(model, "float", "model"), "model.float"),
        given=given,
        precisions=precisions,
        dataset=SliceSpec(_existing(base, _required(data, "path", "dataset"), "dataset.path"),
                          _int(data.get("start", 0), "dataset.start", 0),
                          _int(data["num"], "dataset.num", 1) if "num" in data else None),
        input_range=_range(data.get("input_range", [0.0, 1.0])),
        representative=representative,
        chip_board=_board(chip.get("board")),
        chip_precisions=_precisions(chip.get("precisions", ["int8"]), "chip.precisions", allow_float=False)
        if chip.get("board") else (),
        chip_num=_int(chip["num"], "chip.num", 1) if "num" in chip else None,
        attacks=tuple(spec for i, a in enumerate(_attack_list(doc))
                      for spec in _attacks(a, i, _range(data.get("input_range", [0.0, 1.0])))),
        defenses=tuple(_defense(d, i, base) for i, d in enumerate(_table_list(doc, "defense"))),
        bitwidths=_bitwidths(_table(doc, "bitwidth")),
        qat=_qat(_table(doc, "bitwidth"), base),
        chip_place=_place(chip, doc),
        chip_cycles=_flag(chip.get("cycles", False), "chip.cycles"),
        shard=shard,
        cluster_scheduler=scheduler,
        cluster_workers=workers,
    )


def _check_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """An unknown key is an error (a typo would otherwise fall back to the default silently)."""
    unknown = [k for k in table if k not in known]
    if not unknown:
        return
    guesses = [(k, difflib.get_close_matches(k, known, n=1)) for k in unknown]
    guesses = [(k, m[0]) for k, m in guesses if m]
    if len(unknown) == 1:
        message = f"{where} has unknown key '{unknown[0]}'"
    else:
        message = f"{where} has unknown keys {', '.join(repr(k) for k in unknown)}"
    message += f"; known: {', '.join(known)}"
    if len(unknown) == 1 and guesses:
        message += f"; did you mean '{guesses[0][1]}'?"
    elif guesses:
        message += "; did you mean " + ", ".join(f"'{m}' for '{k}'" for k, m in guesses) + "?"
    raise UserError(message)


def _cluster(table: dict[str, Any]) -> tuple[str | None, int | None, int]:
    """[cluster]: scheduler (an existing Dask cluster) or workers (a LocalCluster; 0: serially), shard."""
    scheduler = table.get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.startswith(("tcp://", "tls://"))
                                  or not scheduler.partition("://")[2].strip()):
        raise UserError(f"cluster.scheduler must be a Dask scheduler address tcp://host:port or tls://host:port, "
                        f"got {scheduler!r}", hint='e.g. scheduler = "tcp://10.0.0.5:8786"')
    workers = _int(table["workers"], "cluster.workers", 0) if "workers" in table else None
    if scheduler is not None and workers is not None:
        raise UserError("[cluster] takes scheduler (an existing cluster) or workers (a local one), not both")
    return scheduler, workers, _int(table.get("shard", DEFAULT_SHARD), "cluster.shard", 1)


def _check_quick(doc: dict[str, Any]) -> None:
    """[quick] keys: its own (QUICK_KEYS) and <section>_<key> overrides naming a known key of that section;
    [quick.attack_params] names attacks of the config."""
    quick = _table(doc, "quick")
    _check_keys(quick, QUICK_KEYS + tuple(f"{s}_{k}" for s in OVERRIDABLE for k in KEYS[s]), "[quick]")
    params = _table(quick, "attack_params", "quick.attack_params")
    names = tuple(dict.fromkeys(str(a.get("name", "")).lower() for a in _attack_list(doc)))
    _check_keys(params, names, "[quick.attack_params] (attacks of this config)")
    for name, value in params.items():
        if not isinstance(value, dict):
            raise UserError(f"quick.attack_params.{name} must be a table of parameters, e.g. {{ max_iter = 10 }}")


def _place(chip: dict[str, Any], doc: dict[str, Any]) -> str | None:
    """[chip] place: the board of a labgrid place, which runs one firmware (the flashed one)."""
    place = chip.get("place")
    if place is None:
        return None
    if not isinstance(place, str) or not place.strip():
        raise UserError(f"chip.place must be a labgrid place name, got {place!r}")
    check_one_chip_firmware(chip.get("precisions", ["int8"]), doc, f"[chip] place = \"{place}\"")
    if not chip.get("board"):
        raise UserError("[chip] place needs [chip] board (the board the place holds)", hint="add [chip] board = \"…\"")
    return place.strip()


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


def check_one_chip_firmware(precisions: Any, doc: dict[str, Any], what: str) -> None:
    """A board behind a link runs the one firmware flashed on it: one chip precision, no on-chip stage."""
    if isinstance(precisions, list) and len(precisions) > 1:
        raise UserError(f"{what} is one board with one firmware: give one [chip] precisions, got {precisions}",
                        hint="flash the firmware of that precision on it (make flash MODEL=…)")
    if any(d.get("on_chip") is True for d in _table_list(doc, "defense")):
        raise UserError(f"{what}: on_chip defenses need their own firmware builds, booted in an emulator",
                        hint="drop on_chip, or run the study on an emulated board")


def _apply_quick(doc: dict[str, Any]) -> dict[str, Any]:
    """[quick] keys are 'section_key = value' overrides, e.g. dataset_num = 50, chip_num = 10;
    attack_num caps every attack's samples; [quick.attack_params.<name>] overrides parameters."""
    quick = dict(doc.get("quick", {}))
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    if quick.pop("train_defenses", True) is False:  # skip train-based defenses in the quick variant
        out["defense"] = [d for d in _table_list(doc, "defense") if d.get("data") is None]
    if quick.pop("train_qat", True) is False and "qat" in _table(doc, "bitwidth"):   # and/or QAT
        out["bitwidth"] = {k: v for k, v in _table(doc, "bitwidth").items() if k != "qat"}
    skip = quick.pop("skip_attacks", [])
    if skip:
        known = {str(a.get("name", "")).lower() for a in _attack_list(doc)}
        if not isinstance(skip, list) or not set(skip) <= known:
            raise UserError(f"quick.skip_attacks must list attacks of this config ({sorted(known)}), got {skip!r}")
        doc = {**doc, "attack": [a for a in _attack_list(doc) if str(a.get("name", "")).lower() not in skip]}
        out["attack"] = doc["attack"]
    cap = quick.pop("attack_num", None)
    overrides = quick.pop("attack_params", {})
    if cap is not None or overrides:
        attacks = [dict(a) for a in _attack_list(doc)]
        for a in attacks:
            if cap is not None:
                a["num"] = min(int(a.get("num", cap)), _int(cap, "quick.attack_num", 1))
            a.update(overrides.get(str(a.get("name", "")).lower(), {}))
        out["attack"] = attacks
    for key, value in quick.items():  # names checked by _check_quick
        section, _, name = key.partition("_")
        if section not in OVERRIDABLE or not name:
            raise UserError(f"quick.{key}: expected <section>_<key>, e.g. dataset_num = 50")
        out[section] = {**_table(out, section), name: value}
    return out


def _table(doc: dict[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"[{where or key}] must be a table")
    return value


def _required(table: dict[str, Any], key: str, section: str) -> Any:
    if key not in table:
        raise UserError(f"[{section}] needs '{key}'")
    return table[key]


BUILTIN_DATASETS = ("builtin:digits-test", "builtin:digits-train")


def _existing(base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"{key} must be a path string")
    if value.startswith("builtin:"):
        if value not in BUILTIN_DATASETS:
            raise UserError(f"{key}: unknown built-in {value!r}; built-in datasets: {', '.join(BUILTIN_DATASETS)}")
        if not key.startswith(("dataset", "defense", "[bitwidth] qat")):
            raise UserError(f"{key}: {value!r} is a built-in dataset, not a file", hint="give a path to a file")
        return Path(value)
    path = Path(value) if Path(value).is_absolute() else (base / value)
    if not path.exists():
        raise UserError(f"{key}: file not found: {path}", hint="paths are relative to the config file's directory")
    return path.resolve()


def _int(value: Any, key: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _range(value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int | float) for v in value)
            or not value[0] < value[1]):
        raise UserError(f"dataset.input_range must be [low, high] with low < high, got {value!r}",
                        hint="[0.0, 1.0] for images scaled to 0..1, [0, 255] for raw pixels")
    return float(value[0]), float(value[1])


def _precisions(values: Any, key: str, allow_float: bool = True) -> tuple[str, ...]:
    if not isinstance(values, list) or not values:
        raise UserError(f"{key} must be a non-empty list, e.g. [\"float32\", \"int16x8\", \"int8\"]")
    out = []
    for v in values:
        name = PRECISION_ALIASES.get(str(v).lower())
        if name is None or (name == FLOAT and not allow_float):
            allowed = [p for p in (FLOAT, *QUANTIZED_PRECISIONS) if allow_float or p != FLOAT]
            raise UserError(f"{key}: unknown precision {v!r}; choose from {allowed}")
        out.append(name)
    if allow_float and FLOAT not in out:
        out.insert(0, FLOAT)  # attacks are crafted on the float model: it is always evaluated
    return tuple(dict.fromkeys(out))


def _board(name: Any) -> str | None:
    if name is None:
        return None

    load_board(str(name))  # lists the boards when unknown
    return str(name)


def _attack_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    attacks = doc.get("attack", [])
    if not isinstance(attacks, list) or not all(isinstance(a, dict) for a in attacks):
        raise UserError("attacks are [[attack]] tables, each with a name and its parameters")
    return attacks


def _bitwidths(table: dict[str, Any]) -> tuple[Any, ...]:
    """[bitwidth] bits = [2, 4, 8], modes = ["weights", "weights+activations"] (host-simulated)."""
    if not table:
        return ()

    _check_keys(table, KEYS["bitwidth"], "[bitwidth]")
    return parse_bitwidths(table.get("bits"), table.get("modes", ["weights", "weights+activations"]),
                           qat="qat" in table)


def _qat(table: dict[str, Any], base: Path) -> QatSpec | None:
    """[bitwidth] qat: the training pool and schedule of quantization-aware training (host.quantization.qat)."""
    if "qat" not in table:
        return None
    qat = table["qat"]
    if not isinstance(qat, dict):
        raise UserError("[bitwidth] qat must be a table {data = {path, start, num}, epochs, learning_rate, "
                        "batch_size}", hint="docs/experiments.md, \"Bit-width sweep\"")
    _check_keys(qat, QAT_KEYS, "[bitwidth] qat")
    data = _slice(_required(qat, "data", "bitwidth.qat"), base, "[bitwidth] qat data", "[bitwidth.qat] data")
    epochs = _by_bits(qat.get("epochs", 3), 3, lambda v, where: _int(v, where, 1), "[bitwidth] qat epochs")
    rates = _by_bits(qat.get("learning_rate", 1e-4), 1e-4, _learning_rate, "[bitwidth] qat learning_rate")
    bits = sorted((set(epochs) | set(rates)) - {"default"}, key=int)
    by_bits = tuple((int(b), epochs.get(b, epochs["default"]), rates.get(b, rates["default"])) for b in bits)
    batch_size = _int(qat.get("batch_size", 64), "[bitwidth] qat batch_size", 1)
    decay = qat.get("learning_rate_decay", "none")
    if decay not in QAT_DECAYS:
        raise UserError(f"[bitwidth] qat learning_rate_decay must be one of {list(QAT_DECAYS)}, got {decay!r}",
                        hint='"cosine": from learning_rate down to 0 over the training; "none": constant')
    return QatSpec(data, epochs["default"], rates["default"], batch_size, by_bits, decay)


def _learning_rate(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
        raise UserError(f"{where} must be a number in (0, 1), got {value!r}")
    return float(value)


def _by_bits(value: Any, default: Any, check: Any, where: str) -> dict[str, Any]:
    """A number for every width, or a table by bit count with an optional default: {"default": v, "2": v2}."""
    if not isinstance(value, dict):
        return {"default": check(value, where)}
    out = {"default": check(value.get("default", default), f"{where} default")}
    for key, v in value.items():
        if key == "default":
            continue
        if not key.isdigit() or not MIN_BITS <= int(key) <= MAX_BITS:
            raise UserError(f"{where}: keys are bit counts {MIN_BITS}..{MAX_BITS} or default, got {key!r}",
                            hint="e.g. { default = 5, 2 = 20, 3 = 20 }")
        out[str(int(key))] = check(v, f"{where} for {key} bits")
    return out


def _table_list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = doc.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UserError(f"[[{key}]] entries must be tables, each with a name and its parameters")
    return tables


def _defense(table: dict[str, Any], index: int, base: Path) -> DefenseSpec:
    """[[defense]]: name, its parameters; train-based ones need `data` = {path, start, num}."""
    name = str(_required(table, "name", f"defense #{index + 1}")).lower()
    params = {k: v for k, v in table.items() if k not in ("name", "data", "on_chip")}
    given_label = ""
    if "label" in params and "label" not in {p.name for p in defense_class(name).params_spec}:
        given_label = params.pop("label")   # how results name it; a trained-model's label is its own parameter
        if not isinstance(given_label, str) or not given_label.strip():
            raise UserError(f"defense '{name}': label must be a non-empty string, got {given_label!r}")
    defense = get_defense(name, **params)  # unknown defense (lists the registry) or bad parameter
    on_chip = table.get("on_chip", False)
    if not isinstance(on_chip, bool):
        raise UserError(f"defense '{name}': on_chip must be true or false, got {on_chip!r}")
    if on_chip and (defense.kind != "preprocess" or defense.chip_stage() is None):
        raise UserError(f"defense '{name}' ({defense.describe()}) has no firmware pre-processing stage",
                        hint="on_chip = true works for feature-squeezing (bit_depth 1..16), median-smoothing and "
                             "spatial-smoothing with filter = median (window 1..5)")
    data = None
    if defense.kind == "train":
        data = _slice(_required(table, "data", f"defense '{name}'"), base, f"defense '{name}' data",
                      f"[[defense]] '{name}' data")
    elif "data" in table:
        raise UserError(f"defense '{name}' ({defense.kind}) takes no training data")
    if defense.kind == "model":
        params = _model_files(params, name, base)
    for key in defense.file_params:
        what = next(p.help for p in defense.params_spec if p.name == key)
        if not params.get(key):
            raise UserError(f"defense '{name}': give its {key} file, {key} = \"FILE\"", hint=what)
        try:
            params[key] = str(_existing(base, params[key], f"defense '{name}' {key}"))
        except UserError as err:
            raise UserError(err.message, hint=f"{err.hint}; {key}: {what}") from None
    return DefenseSpec(name, defense.kind, params, data, on_chip, given_label.strip())


def _slice(spec: Any, base: Path, what: str, table: str) -> SliceSpec:
    """A training-data table {path, start, num}, the path relative to the config; `table` names it in
    unknown-key messages."""
    if not isinstance(spec, dict):
        raise UserError(f"{what} must be a table {{path, start, num}} (training images, not the evaluation images)")
    _check_keys(spec, SLICE_KEYS, table)
    return SliceSpec(_existing(base, _required(spec, "path", what), what),
                     _int(spec.get("start", 0), f"{what}.start", 0),
                     _int(spec["num"], f"{what}.num", 1) if "num" in spec else None)


def _model_files(params: dict[str, Any], name: str, base: Path) -> dict[str, Any]:
    """A trained-model defense's files, resolved against the config's directory: float required."""
    if not params.get("float"):
        raise UserError(f"defense '{name}': give the defended float model, float = \"model.h5\"",
                        hint="and its int8 / int16x8 .tflite files if it has them (docs/defenses.md)")
    out = dict(params)
    for key in ("float", "int8", "int16x8"):
        if params.get(key):
            out[key] = str(_existing(base, params[key], f"defense '{name}' {key}"))
    return out


def study_keys(name: str) -> tuple[str, ...]:
    """Keys of an [[attack]] table the study consumes rather than the attack: `num` (samples) and,
    for a query attack, `target` and `via` (its oracle). A white-box attack's own `target` (the
    patch's target class) goes to the attack."""
    return ("num", "target", "via") if attack_class(name).needs == "oracle" else ("num",)


def attack_params(spec: AttackSpec) -> dict[str, Any]:
    """The parameters of the attack itself (without the study's keys, without eps)."""
    keys = study_keys(spec.name)
    return {k: v for k, v in spec.params.items() if k not in keys}


def _attacks(table: dict[str, Any], index: int, input_range: tuple[float, float]) -> list[AttackSpec]:
    """[[attack]]: one spec, or for a query attack whose target is a list, one per target (name@target)."""
    targets = table.get("target")
    if not isinstance(targets, list) or "target" not in study_keys(str(table.get("name", "")).lower()):
        return [_attack(table, index, input_range)]
    name = str(table["name"]).lower()
    if not targets or not all(isinstance(t, str) for t in targets) or len(set(targets)) != len(targets):
        raise UserError(f"attack '{name}': target must list distinct precisions, got {targets!r}")
    specs = [_attack({**table, "target": t}, index, input_range) for t in targets]
    return [dataclasses.replace(s, label=f"{name}@{s.params['target']}") for s in specs]


def _attack(table: dict[str, Any], index: int, input_range: tuple[float, float] = (0.0, 1.0)) -> AttackSpec:
    name = str(_required(table, "name", f"attack #{index + 1}")).lower()
    params = {k: v for k, v in table.items() if k not in ("name", "eps")}
    keys = study_keys(name)  # an unknown name fails here, listing the registry
    own_params = {k: v for k, v in params.items() if k not in keys}
    if "eps" not in table:
        get_attack(name, **own_params)  # unknown attack (lists the registry) or bad parameter
        _attack_routing(name, params)
        return AttackSpec(name, (None,), params)
    eps_value = table["eps"]
    eps_list = eps_value if isinstance(eps_value, list) else [eps_value]
    if not eps_list or not all(isinstance(e, int | float) and math.isfinite(e) and e > 0 for e in eps_list):
        raise UserError(f"attack '{name}': eps must be a positive number or a list of them, got {eps_value!r}")
    span = input_range[1] - input_range[0]
    too_big = [e for e in eps_list if e >= span]
    if too_big and attack_class(name).norm == "inf" and attack_class(name).bounded:
        raise UserError(f"attack '{name}': eps {too_big[0]:g} covers the whole input range "
                        f"[{input_range[0]:g}, {input_range[1]:g}] (an L∞ radius >= {span:g} allows any input)",
                        hint=f"eps is in input units: give radii below {span:g}, e.g. eps = [{span / 255 * 8:.4g}] "
                             "(8/255 of the range)")
    get_attack(name, eps=float(eps_list[0]), **own_params)
    _attack_routing(name, params)
    return AttackSpec(name, tuple(float(e) for e in eps_list), params)


def _attack_routing(name: str, params: dict[str, Any]) -> None:
    """target (precision a query attack queries), via (reference|chip), num (samples)."""
    if "num" in params:
        _int(params["num"], f"attack '{name}' num", 1)
    if "target" not in study_keys(name):
        return
    queryable = (FLOAT, *QUANTIZED_PRECISIONS)
    if "target" in params and PRECISION_ALIASES.get(str(params["target"]).lower()) not in queryable:
        raise UserError(f"attack '{name}': target must be one of {list(queryable)} (or a list of them), "
                        f"got {params['target']!r}")
    if "target" in params:
        params["target"] = PRECISION_ALIASES[str(params["target"]).lower()]
    if params.get("via", "native") not in ORACLES:
        raise UserError(f"attack '{name}': via must be one of {', '.join(repr(o) for o in ORACLES)}, "
                        f"got {params['via']!r}")
    if params.get("target") == FLOAT and params.get("via", "native") != "native":
        raise UserError(f"attack '{name}': the float32 model is queried on the host (Keras); via = "
                        f"{params['via']!r} needs a quantized target", hint="drop via for target = \"float32\"")
