"""Configured studies: the TOML loader's errors, and a small real study end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host.core.errors import UserError
from host.core.paths import ROOT, SHARED_DIR
from host.study.config import load_experiment
from host.study.runner import load_slice

MODELS = ROOT / "models"

BASE = f"""
[model]
float = "{MODELS / 'digits_cnn.keras'}"
int8 = "{MODELS / 'digits_cnn_int8.tflite'}"
precisions = ["float32", "int8"]
[dataset]
path = "builtin:digits-test"
num = 12
"""


needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (make deps)")

# `python -m host.evaluate`, counting the inferences the device answered: every result the protocol
# client received from the chip (host.link.client.Client.infer_many; Client.infer goes through it).
COUNTING_EVALUATE = """
import sys
from host.link.client import Client
answered = 0
original = Client.infer_many
def counted(self, *args, **kwargs):
    global answered
    for result in original(self, *args, **kwargs):
        answered += 1
        yield result
Client.infer_many = counted
from host.core.errors import run_cli
from host.evaluate import main
status = run_cli(main, sys.argv[1:])
print(f"device answered {answered} inferences", file=sys.stderr)
sys.exit(status)
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_shipped_configs_load() -> None:
    quick = load_experiment(ROOT / "configs/digits-quick.toml", quick=True)
    assert quick.dataset.num == 40 and quick.chip_num == 20 and quick.precisions == ("float32", "int16x8", "int8")
    if SHARED_DIR.exists():
        study = load_experiment(ROOT / "configs/david-goliath-cifar10.toml")
        assert study.dataset.num == 1000 and [a.name for a in study.attacks][:2] == ["pgd", "autoattack"]
        assert study.attacks[0].eps == (0.0002, 0.0004, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006,
                                        0.007, 0.008)   # the study's twelve (run_cifar_attacks.sh)
        defended = load_experiment(ROOT / "configs/david-goliath-defended.toml")
        assert [d.label for d in defended.defenses] == [
            "adversarial training (study)", "defensive distillation (study)",
            "ensemble adversarial training (study)", "Sinkhorn adversarial training (study)"]
        assert [a.name for a in defended.attacks] == [a.name for a in study.attacks]
        assert all(Path(d.params[p]).exists() for d in defended.defenses for p in ("float", "int8", "int16x8"))
        own = load_experiment(ROOT / "configs/david-goliath-own-defenses.toml")
        assert [d.kind for d in own.defenses] == ["train"] * 4 + ["model"] * 4
        assert own.defenses[0].label == "adversarial training (ours)" and own.defenses[0].params["optimizer"] == "sgd"
        assert [d.kind for d in load_experiment(ROOT / "configs/david-goliath-own-defenses.toml", quick=True).defenses
                ] == ["model"] * 4
        sweep = load_experiment(ROOT / "configs/bitwidth-patch-cifar10.toml", quick=True)
        patch = next(a for a in sweep.attacks if a.name == "patch")
        assert patch.params["target"] == 0 and len(sweep.bitwidths) == 12


@pytest.mark.skipif(not SHARED_DIR.exists(), reason="needs ../shared (the D&G models and CIFAR-10 images)")
@pytest.mark.parametrize(("derived", "parent"), [
    ("david-goliath-defended-n100.toml", "david-goliath-defended.toml"),
    ("david-goliath-query-attacks.toml", "david-goliath-cifar10.toml"),
    ("david-goliath-cifar10-table.toml", "david-goliath-cifar10.toml"),
    ("david-goliath-pixeldefend-n100.toml", "david-goliath-pixeldefend.toml"),
    ("david-goliath-own-defenses-n100a.toml", "david-goliath-own-defenses.toml"),
    ("david-goliath-own-defenses-n100b.toml", "david-goliath-own-defenses.toml"),
    ("bitwidth-edges-cifar10.toml", "bitwidth-patch-cifar10.toml"),
    ("bitwidth-edges-2bit-long-cifar10.toml", "bitwidth-edges-cifar10.toml"),
])
def test_derived_configs_keep_their_parents_attack_settings(derived: str, parent: str, tmp_path: Path) -> None:
    """A sized-down config copies its parent's [[attack]] tables: every attack it keeps has the parent's
    settings (only `num`, how many images, may differ), so the two cannot drift apart. Its defenses are the
    parent's given models; or, for the halves of our own trainings, half of the parent's trainings each,
    with the parent's settings."""
    child, base = (load_experiment(_with_checkpoint_stand_in(ROOT / "configs" / name, tmp_path))
                   for name in (derived, parent))
    settings = {a.shown: (a.eps, {k: v for k, v in a.params.items() if k != "num"}) for a in base.attacks}
    assert child.attacks and all(settings[a.shown] == (a.eps, {k: v for k, v in a.params.items() if k != "num"})
                                 for a in child.attacks)
    if "2bit-long" in derived:  # the parent's training but for the 2-bit width's epochs: 60, not 20
        assert child.qat.schedule(2)[0] == 60 and base.qat.schedule(2)[0] == 20
        as_parent = tuple((b, 20 if b == 2 else epochs, rate) for b, epochs, rate in child.qat.by_bits)
        assert dataclasses.replace(child.qat, by_bits=as_parent) == base.qat
        assert [w.key for w in child.bitwidths] == ["sim:w2a2e8", "sim:w2a2e8-qat"]
    elif "bitwidth" in derived:   # the same quantization-aware training (pool and schedule)
        assert dataclasses.replace(child.qat, decay="none") == base.qat and child.qat.by_bits == base.qat.by_bits
    if "own-defenses-n100" in derived:
        trainings = {d.label: d.params for d in base.defenses if d.kind == "train"}
        assert len(child.defenses) == 2 and all(trainings[d.label] == d.params for d in child.defenses)
        return
    assert [d.label for d in child.defenses] == [d.label for d in base.defenses if d.kind != "train"]


@pytest.mark.skipif(not SHARED_DIR.exists(), reason="needs ../shared (the D&G models and CIFAR-10 images)")
def test_the_two_halves_of_our_trainings_are_all_of_them() -> None:
    halves = [load_experiment(ROOT / f"configs/david-goliath-own-defenses-n100{h}.toml") for h in "ab"]
    full = load_experiment(ROOT / "configs/david-goliath-own-defenses.toml")
    assert sorted(d.label for h in halves for d in h.defenses) == sorted(
        d.label for d in full.defenses if d.kind == "train")


def _with_checkpoint_stand_in(config: Path, tmp_path: Path) -> Path:
    """The config with its relative paths made absolute and its PixelCNN checkpoint (trained by a command,
    absent from a fresh checkout) replaced by an empty stand-in: loading only needs the file to exist."""
    stand_in = tmp_path / "pixelcnn.keras"
    stand_in.touch()
    text = re.sub(r'pixelcnn = "[^"]+"', f'pixelcnn = "{stand_in}"', config.read_text())
    text = re.sub(r'= "(\.\./[^"]+)"', lambda m: f'= "{(config.parent / m.group(1)).resolve()}"', text)
    copy = tmp_path / config.name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize(("extra", "message"), [
    ('[[attack]]\nname = "carlini"\n', "unknown attack 'carlini'"),
    ('[[attack]]\nname = "pgd"\neps = [-0.1]\n', "eps must be a positive number"),
    ('[[attack]]\nname = "pgd"\nmax_iter = 0\n', "max_iter"),
    ('[[attack]]\nname = "square-linf"\ntarget = "int4"\n', "target must be one of"),
    ('[[attack]]\nname = "square-linf"\nvia = "wifi"\n', "via must be"),
    ('[[attack]]\nname = "square-linf"\ntarget = ["int8", "int8"]\n', "target must list distinct precisions"),
    ('[[attack]]\nname = "square-linf"\ntarget = [["int8"]]\n', "target must list distinct precisions"),
    ('[[attack]]\nname = "square-linf"\ntarget = "float32"\nvia = "chip"\n', "float32 model is queried on the host"),
    ('[[attack]]\nname = "fgsm"\neps = [0.1]\nvia = "chip"\n', r"'fgsm' has no parameter\(s\) via"),
    ('[[attack]]\nname = "patch"\ntarget = "int8"\n', "patch.: target must be int"),
    ('[chip]\nboard = "arduino-uno"\n', "unknown board 'arduino-uno'"),
    ('[[defense]]\nname = "x"\n', "unknown defense 'x'"),
    ('[[defense]]\nname = "pgd-at"\n', "needs 'data'"),
    ('[bitwidth]\nbits = [2]\nqat = { epochs = 2 }\n', r"\[bitwidth.qat\] needs 'data'"),
    ('[bitwidth]\nbits = [2]\nqat = { data = { path = "builtin:digits-train" }, rate = 1 }\n', "unknown key"),
    ('[bitwidth]\nbits = [2]\nqat = { data = { path = "builtin:digits-train" }, epochs = { 9 = 2 } }\n',
     "keys are bit counts 2..8 or default"),
    ('[bitwidth]\nbits = [2]\nqat = { data = { path = "builtin:digits-train" }, learning_rate = { 2 = 5 } }\n',
     r"learning_rate for 2 bits must be a number in \(0, 1\)"),
    ('[bitwidth]\nbits = [2]\nqat = { data = { path = "builtin:digits-train" }, learning_rate_decay = "step" }\n',
     "learning_rate_decay must be one of"),
    ('[[defense]]\nname = "jpeg"\nquality = 500\n', "quality"),
    ('[[defense]]\nname = "jpeg"\nlabel = ""\n', "label must be a non-empty string"),
    ('[defend]\nname = "x"\n', "unknown section"),
])
def test_bad_configs_are_refused_before_work(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_experiment(write(tmp_path, BASE + extra))


def test_qat_schedules_may_differ_by_bit_count(tmp_path: Path) -> None:
    """epochs and learning_rate: one number for every width, or a table by bit count with a default; a
    schedule by bits changes the study's fingerprint, a config without one keeps it."""
    from host.study.journal import experiment_fingerprint

    qat = '[bitwidth]\nbits = [2, 4]\n[bitwidth.qat]\ndata = { path = "builtin:digits-train" }\n'
    plain = load_experiment(write(tmp_path, BASE + qat + "epochs = 3\n"))
    assert plain.qat.schedule(2) == (3, 1e-4) and plain.qat.by_bits == ()
    exp = load_experiment(write(tmp_path, BASE + qat + "epochs = { default = 5, 2 = 20 }\n"
                                                     "learning_rate = { 2 = 1e-3, 3 = 3e-4 }\n"))
    assert exp.qat.schedule(2) == (20, 1e-3) and exp.qat.schedule(3) == (5, 3e-4) and exp.qat.schedule(4) == (5, 1e-4)
    assert experiment_fingerprint(exp) != experiment_fingerprint(dataclasses.replace(exp, qat=dataclasses.replace(
        exp.qat, by_bits=())))
    assert repr(plain.qat) == repr(dataclasses.replace(plain.qat, by_bits=((2, 1, 0.1),)))
    cosine = load_experiment(write(tmp_path, BASE + qat + 'learning_rate_decay = "cosine"\n'))
    assert cosine.qat.decay == "cosine" and plain.qat.decay == "none"
    assert experiment_fingerprint(cosine) != experiment_fingerprint(dataclasses.replace(
        cosine, qat=dataclasses.replace(cosine.qat, decay="none")))


def test_missing_files_and_precisions(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_experiment(tmp_path / "absent.toml")
    with pytest.raises(UserError, match="model.float: file not found"):
        load_experiment(write(tmp_path, BASE.replace("digits_cnn.keras", "nothing.keras")))
    no_int16 = BASE.replace('["float32", "int8"]', '["float32", "int16x8", "int8"]')
    with pytest.raises(UserError, match=r"no \.tflite in \[model\] and there is no \[dataset.representative\]"):
        load_experiment(write(tmp_path, no_int16))
    with pytest.raises(UserError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[model\n"))


@needs_qemu
@pytest.mark.qemu
def test_small_study_on_host_and_chip(tmp_path: Path) -> None:
    config = write(tmp_path, BASE.replace('["float32", "int8"]', '["float32", "int16x8", "int8"]') + """
[dataset.representative]
path = "builtin:digits-train"
num = 100
[chip]
board = "mps2-an386"
precisions = ["int8"]
num = 6
[[attack]]
name = "fgsm"
eps = [0.1, 0.3]
[[attack]]
name = "deepfool"
max_iter = 10
num = 6
[[attack]]
name = "square-linf"
eps = [0.3]
target = "int8"
via = "chip"
num = 3
max_iter = 20
[[defense]]
name = "feature-squeezing"
bit_depth = 2
""")
    proc = subprocess.run([sys.executable, "-c", COUNTING_EVALUATE, "--config", str(config), "--out", str(tmp_path),
                           "--run-id", "s", "--no-progress", "--workers", "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "chip vs reference: bit-exact (27/27 identical)" in proc.stdout
    doc = json.loads((tmp_path / "s/metrics.json").read_text())
    evals = {(e["attack"], e["eps"]): e for e in doc["evaluations"]}
    assert set(evals) == {("clean", 0.0), ("fgsm", 0.1), ("fgsm", 0.3), ("deepfool", None), ("square-linf", 0.3)}
    square = evals[("square-linf", 0.3)]
    assert square["oracle"] == "chip:int8" and square["queries"] >= 3
    # via = "chip": the attack's queries went to the device. It answered the 27 evaluation inferences
    # (6 clean + 2 x 6 FGSM + 6 DeepFool + 3 Square results) and every one of Square's queries, no more.
    assert doc["summary"]["chip_inferences"] == 27
    answered = re.search(r"device answered (\d+) inferences", proc.stderr)
    assert answered is not None, proc.stderr
    assert int(answered.group(1)) == 27 + square["queries"], (answered.group(0), square["queries"])
    clean = evals[("clean", 0.0)]["models"]
    assert set(clean) == {"float32", "int16x8", "int8", "chip:int8"} and clean["chip:int8"]["n"] == 6
    assert clean["chip:int8"]["instructions_median"] > 1e5
    strong = evals[("fgsm", 0.3)]
    assert strong["models"]["float32"]["accuracy"] < clean["float32"]["accuracy"]
    assert strong["perturbation"]["linf"]["max"] <= 0.3 + 1e-6
    assert set(strong["transfer"]) >= {"float32->int8", "float32->int16x8", "int16x8->int8"}
    assert evals[("deepfool", None)]["models"]["float32"]["n"] == 6
    assert set(doc["boundary_distance"]["fgsm"]) >= {"float32", "int8"}
    assert doc["gradient_misalignment"]["int8"]["queries"] > 0
    squeezed = strong["defended"]["feature-squeezing(bit_depth=2)"]["models"]
    assert set(squeezed) == {"float32", "int16x8", "int8"} and 0 <= squeezed["int8"]["accuracy"] <= 1
    report = (tmp_path / "s/report.md").read_text()
    assert "## Transfer" in report and "| feature-squeezing(bit_depth=2) | fgsm | 0.3 |" in report


RESUMABLE = BASE + """
[[attack]]
name = "fgsm"
eps = [0.1, 0.3]
[[attack]]
name = "deepfool"
max_iter = 10
"""


def study(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """The study in one process (`--workers 0`, unless `extra` says where to run): the units and the
    results are the same on any number of workers (tests/study/test_cluster.py)."""
    where = [] if {"--workers", "--scheduler"} & set(extra) else ["--workers", "0"]
    return subprocess.run([sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(out),
                           "--no-progress", *where, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)


def journal_units(run: Path, missing_ok: bool = False) -> dict[str, bytes]:
    """Every unit a run's journal holds (results.sqlite, read-only), by key; `missing_ok`: none while the
    run is still creating its tables (a test polling a run that just started)."""
    with contextlib.closing(sqlite3.connect(f"file:{run / 'results.sqlite'}?mode=ro", uri=True)) as db:
        try:
            return dict(db.execute("SELECT key, result FROM units"))
        except sqlite3.OperationalError:
            if missing_ok:
                return {}
            raise


def without_timings(doc: dict) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in doc["evaluations"]]


def test_a_defense_can_be_named(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '[[attack]]\nname = "fgsm"\neps = [0.1]\n'
                   '[[defense]]\nname = "jpeg"\nquality = 30\nlabel = "JPEG at 30"\n[[defense]]\nname = "jpeg"\n')
    specs = load_experiment(config).defenses
    assert [d.label for d in specs] == ["JPEG at 30", "jpeg"] and specs[0].params == {"quality": 30}


def test_quantization_aware_trained_widths_beside_the_post_training_ones(tmp_path: Path) -> None:
    """[bitwidth] qat: each width is also trained through its rounding (one journaled unit each, before
    the units evaluating it), and evaluated on the host as sim:w2a2-qat beside sim:w2a2."""
    config = write(tmp_path, BASE.replace("num = 12", "num = 60") + """
[[attack]]
name = "fgsm"
eps = [0.1]
[bitwidth]
bits = [2]
modes = ["weights+activations"]
[bitwidth.qat]
data = { path = "builtin:digits-train", start = 0, num = 1000 }
epochs = 3
learning_rate = 1e-3
batch_size = 32
""")
    assert [w.key for w in load_experiment(config).bitwidths] == ["sim:w2a2", "sim:w2a2-qat"]
    proc = study(config, tmp_path, "--run-id", "b")
    assert proc.returncode == 0, proc.stderr
    assert "quantization-aware training: 1 bit width(s), 3 epoch(s) each on 1000 images" in proc.stderr
    clean = json.loads((tmp_path / "b/metrics.json").read_text())["evaluations"][0]["models"]
    assert clean["sim:w2a2-qat"]["accuracy"] > clean["sim:w2a2"]["accuracy"] + 0.2, clean
    assert "qat/sim:w2a2-qat" in journal_units(tmp_path / "b")
    assert "w2a2-qat" in (tmp_path / "b/report.md").read_text()


def test_a_query_attack_runs_against_each_precision_it_lists(tmp_path: Path) -> None:
    """target = [...]: one attack set per precision (name@precision), the float32 model queried through
    Keras, the int8 one through the engine, each with its own query count."""
    config = write(tmp_path, BASE + """
[[attack]]
name = "square-linf"
eps = 0.3
max_iter = 5
num = 4
target = ["float32", "int8"]
""")
    specs = load_experiment(config).attacks
    assert [(s.shown, s.params["target"]) for s in specs] == [("square-linf@float32", "float32"),
                                                                ("square-linf@int8", "int8")]
    proc = study(config, tmp_path, "--run-id", "q")
    assert proc.returncode == 0, proc.stderr
    evals = {e["attack"]: e for e in json.loads((tmp_path / "q/metrics.json").read_text())["evaluations"]}
    assert set(evals) == {"clean", "square-linf@float32", "square-linf@int8"}
    assert evals["square-linf@float32"]["oracle"] == "keras:float32"
    assert evals["square-linf@int8"]["oracle"] == "native:int8"
    for key in ("square-linf@float32", "square-linf@int8"):
        assert evals[key]["n"] == 4 and evals[key]["queries"] >= 4
    assert "| square-linf@float32 | 0.3 |" in (tmp_path / "q/report.md").read_text()


@needs_qemu
@pytest.mark.qemu
def test_patch_success_per_bit_width_on_host_and_chip(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + """
[chip]
board = "mps2-an386"
precisions = ["int8"]
num = 4
[[attack]]
name = "patch"
target = 3
max_iter = 20
scale = 0.6
scale_min = 0.5
scale_max = 0.7
[bitwidth]
bits = [2, 8]
modes = ["weights"]
""")
    proc = study(config, tmp_path, "--run-id", "p")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "p/metrics.json").read_text())
    patch = next(e for e in doc["evaluations"] if e["attack"] == "patch")
    assert patch["target_class"] == 3
    models = patch["models"]
    assert set(models) == {"float32", "int8", "chip:int8", "sim:w2", "sim:w8"}
    y = np.asarray(load_slice(load_experiment(config).dataset, (0.0, 1.0))[1])
    for key, m in models.items():
        assert m["targeted_success"]["of"] == int(np.sum(y[:m["n"]] != 3)), key
    assert "target_class" not in doc["evaluations"][0]  # clean
    report = (tmp_path / "p/report.md").read_text()
    assert "## Targeted success" in report and "| patch | – | 3 |" in report
    assert 'id="bitwidth"' in (tmp_path / "p/report.html").read_text()


@pytest.mark.slow   # 17 s; a killed client's resume is also tests/study/test_resume.py's, in the default suite
def test_an_interrupted_study_resumes_from_its_finished_attacks(tmp_path: Path) -> None:
    config = write(tmp_path, RESUMABLE)
    assert study(config, tmp_path, "--run-id", "whole").returncode == 0
    whole = json.loads((tmp_path / "whole/metrics.json").read_text())
    # A client that died during the second attack: its journal holds every unit but DeepFool's.
    (tmp_path / "cut").mkdir()
    shutil.copy(tmp_path / "whole/results.sqlite", tmp_path / "cut/results.sqlite")
    with contextlib.closing(sqlite3.connect(tmp_path / "cut/results.sqlite")) as db, db:
        lost = db.execute("DELETE FROM units WHERE key LIKE '%deepfool%'").rowcount
        db.execute("UPDATE meta SET value = 'running' WHERE key = 'status'")
    again = study(config, tmp_path, "--run-id", "cut")
    assert again.returncode != 0 and "already exists" in again.stderr and "--resume cut" in again.stderr
    resumed = study(config, tmp_path, "--resume", "cut")
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads((tmp_path / "cut/metrics.json").read_text())
    assert lost == 2 and doc["run"]["units_run"] == lost      # DeepFool's craft and host units, nothing else
    assert without_timings(doc) == without_timings(whole)
    assert doc["boundary_distance"] == whole["boundary_distance"]
    assert journal_units(tmp_path / "cut") == journal_units(tmp_path / "whole")


def with_pgd_at(train_images: int) -> str:
    """BASE with FGSM and one epoch of PGD adversarial training on the digits' training split."""
    return BASE + f"""
[[attack]]
name = "fgsm"
eps = [0.1]
[[defense]]
name = "pgd-at"
eps = 0.1
epochs = 1
data = {{ path = "builtin:digits-train", start = 200, num = {train_images} }}
"""


def test_a_failing_defense_is_left_out_and_the_undefended_results_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from host import evaluate
    from host.core.errors import run_cli
    from host.defenses.pgd_at import PGDAdversarialTraining

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")  # as a long training run can end

    monkeypatch.setattr(PGDAdversarialTraining, "train", broken)
    config = write(tmp_path, with_pgd_at(train_images=50))
    argv = ["--config", str(config), "--out", str(tmp_path), "--run-id", "g", "--no-progress", "--workers", "0"]
    assert run_cli(evaluate.main, argv) == 1
    assert "1 part(s) of the study failed (defense pgd-at" in capsys.readouterr().err
    doc = json.loads((tmp_path / "g/metrics.json").read_text())
    [failure] = doc["summary"]["failed_defenses"]
    assert failure["defense"].startswith("pgd-at") and "out of memory" in failure["error"]
    assert [e["attack"] for e in doc["evaluations"]] == ["clean", "fgsm"] and doc["defended_models"] == {}
    assert "defense `pgd-at" in (tmp_path / "g/report.md").read_text()


@pytest.mark.slow   # about 17 s
def test_a_defended_model_is_quantized_with_its_training_images_when_no_representative_set(tmp_path: Path) -> None:
    config = write(tmp_path, with_pgd_at(train_images=300))
    proc = study(config, tmp_path, "--run-id", "d")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "d/metrics.json").read_text())
    [(label, defended)] = doc["defended_models"].items()
    assert label.startswith("pgd-at")
    assert defended["defense"]["calibration"] == {"path": "builtin:digits-train", "start": 200, "num": 300}
    assert defended["experiment"]["precisions"]["int8"]["origin"] != "given"   # quantized from the new model
    fgsm = next(e for e in defended["evaluations"] if e["attack"] == "fgsm")
    assert 0 <= fgsm["models"]["int8"]["accuracy"] <= 1


GIVEN_MODEL = BASE + f"""
[[attack]]
name = "fgsm"
eps = [0.1]
[[defense]]
name = "trained-model"
label = "the same model"
float = "{MODELS / 'digits_cnn.keras'}"
int8 = "{MODELS / 'digits_cnn_int8.tflite'}"
"""


def test_a_given_defended_model_is_evaluated_beside_the_undefended_one(tmp_path: Path) -> None:
    """The undefended model's own files as the "defended" one: its sub-study gives the same numbers, under the
    label the config gives, in the report's defense table."""
    proc = study(write(tmp_path, GIVEN_MODEL), tmp_path, "--run-id", "m")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "m/metrics.json").read_text())
    [(label, defended)] = doc["defended_models"].items()
    assert label == "the same model"
    assert defended["defense"]["given"] == {"int8": str(MODELS / "digits_cnn_int8.tflite")}
    assert defended["experiment"]["precisions"]["int8"]["origin"] == "given"
    for ours, theirs in zip(doc["evaluations"], defended["evaluations"], strict=True):
        assert ours["attack"] == theirs["attack"]
        assert {m: r["accuracy"] for m, r in ours["models"].items()} == \
               {m: r["accuracy"] for m, r in theirs["models"].items()}
    assert "| the same model | fgsm | 0.1 |" in (tmp_path / "m/report.md").read_text()


@pytest.mark.parametrize(("defense", "message"), [
    ('name = "trained-model"\nint8 = "x.tflite"\n', "defense 'trained-model': give the defended float model"),
    (f'name = "trained-model"\nfloat = "{MODELS / "digits_cnn.keras"}"\n',
     "no int8 file, and no \\[dataset.representative\\] to quantize it"),
    ('name = "trained-model"\nfloat = "nowhere.h5"\n', "nowhere.h5"),
    ('name = "trained-model"\nfloat = "model.onnx"\n', "float='model.onnx' is invalid: expected a .h5 or .keras"),
])
def test_a_bad_given_defended_model_is_refused_before_the_study(tmp_path: Path, defense: str, message: str) -> None:
    proc = study(write(tmp_path, BASE + '[[attack]]\nname = "fgsm"\neps = [0.1]\n[[defense]]\n' + defense),
                 tmp_path, "--run-id", "e")
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr
    assert not (tmp_path / "e").exists()


@pytest.mark.slow   # about 5 s (loads the CIFAR ResNet)
@pytest.mark.skipif(not (SHARED_DIR / "models" / "david-goliath").exists(), reason="needs ../shared's models")
def test_a_defended_model_of_other_inputs_is_refused_before_the_study(tmp_path: Path) -> None:
    cifar = SHARED_DIR / "models" / "david-goliath"
    defense = (f'[[attack]]\nname = "fgsm"\neps = [0.1]\n[[defense]]\nname = "trained-model"\n'
               f'float = "{cifar / "cifar_resnet_float.h5"}"\nint8 = "{cifar / "cifar_resnet_int8.tflite"}"\n')
    proc = study(write(tmp_path, BASE + defense), tmp_path, "--run-id", "e")
    assert proc.returncode == 2, proc.stderr
    assert "its float model takes (32, 32, 3)" in proc.stderr and "the undefended model takes (8, 8, 1)" in proc.stderr
    assert not (tmp_path / "e").exists()


def test_qat_data_of_other_inputs_is_refused_before_the_study(tmp_path: Path) -> None:
    np.savez(tmp_path / "pool.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, np.uint8))
    qat = ('[[attack]]\nname = "fgsm"\neps = [0.1]\n[bitwidth]\nbits = [2]\n[bitwidth.qat]\n'
           f'data = {{ path = "{tmp_path / "pool.npz"}" }}\n')
    proc = study(write(tmp_path, BASE + qat), tmp_path, "--run-id", "e")
    assert proc.returncode == 2, proc.stderr
    assert "[bitwidth.qat] data" in proc.stderr and "inputs of shape (32, 32, 3)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "e").exists()


@pytest.mark.parametrize(("attacks", "message"), [
    ('[[attack]]\nname = "fgsm"\neps = [0.1]\n[[attack]]\nname = "patch"\ntarget = 12\n',
     "attack 'patch': target=12 but the model has 10 classes"),
    ('[[attack]]\nname = "square-linf"\neps = [0.1]\nvia = "chip"\n',
     "attack 'square-linf' queries the chip, but int8 is not on the \\[chip\\]"),
])
def test_model_dependent_attack_errors_come_before_the_study(tmp_path: Path, attacks: str, message: str) -> None:
    proc = study(write(tmp_path, BASE + attacks), tmp_path, "--run-id", "e")
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr
    assert not (tmp_path / "e").exists()


def test_an_attack_failing_unexpectedly_is_left_out_and_the_study_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from host import evaluate
    from host.attacks.fgsm import FGSM
    from host.core.errors import run_cli

    def broken(self: FGSM, model: object, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x[:, 99]  # an IndexError from inside the attack, as ART's or TensorFlow's would be

    monkeypatch.setattr(FGSM, "_generate", broken)
    config = write(tmp_path, RESUMABLE)
    argv = ["--config", str(config), "--out", str(tmp_path), "--run-id", "f", "--no-progress", "--workers", "0"]
    assert run_cli(evaluate.main, argv) == 1
    err = capsys.readouterr().err
    assert "warning: attack 'fgsm' failed and is left out: IndexError" in err
    assert "1 part(s) of the study failed (attack fgsm)" in err and "--resume f" in err
    doc = json.loads((tmp_path / "f/metrics.json").read_text())
    [failure] = doc["summary"]["failed_attacks"]
    assert failure["attack"] == "fgsm" and "x[:, 99]" in failure["traceback"]
    assert [e["attack"] for e in doc["evaluations"]] == ["clean", "deepfool"]


def test_a_study_resumes_only_with_the_config_it_started_with(tmp_path: Path) -> None:
    from host.study.journal import Journal

    config = write(tmp_path, RESUMABLE)
    Journal.start(tmp_path / "run/results.sqlite", "0" * 64, [], resume=False).close()
    proc = study(config, tmp_path, "--resume", "run")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "changed since the run" in proc.stderr


# About 35 s; the default suite resumes a study in test_an_interrupted_study_resumes_from_its_finished_attacks.
@pytest.mark.slow
def test_a_study_killed_inside_an_attack_resumes_at_its_next_eps(tmp_path: Path) -> None:
    import signal
    import time

    config = write(tmp_path, BASE + """
[[attack]]
name = "pgd"
eps = [0.1, 0.03]
max_iter = 500
restarts = 20
""")   # ε = 0.03 fools none of the 12: all 20 restarts of 500 steps run (seconds), time to kill the host
    assert study(config, tmp_path, "--run-id", "whole").returncode == 0
    whole = json.loads((tmp_path / "whole/metrics.json").read_text())
    first = "host/attack-00-pgd-eps0/0"     # ε = 0.1 evaluated: the host is killed during ε = 0.03
    proc = subprocess.Popen([sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(tmp_path),
                             "--no-progress", "--run-id", "cut", "--workers", "0"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (tmp_path / "cut/results.sqlite").exists() and first in journal_units(tmp_path / "cut", missing_ok=True):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journal_units(tmp_path / "cut")
    assert first in before and not (tmp_path / "cut/metrics.json").exists()
    resumed = study(config, tmp_path, "--resume", "cut")
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads((tmp_path / "cut/metrics.json").read_text())
    after = journal_units(tmp_path / "cut")
    assert doc["run"]["units_run"] == len(after) - len(before) > 0
    assert {k: after[k] for k in before} == before
    assert without_timings(doc) == without_timings(whole)
    assert doc["boundary_distance"] == whole["boundary_distance"]
    assert after == journal_units(tmp_path / "whole")


WHOLE_SET = BASE + """
[cluster]
shard = 5
[[attack]]
name = "autoattack"
eps = [0.1]
max_iter = 5
fab_max_iter = 5
square_max_iter = 20
[[attack]]
name = "fgsm"
eps = [0.1]
"""


@pytest.mark.slow   # about 15 s
def test_autoattack_is_crafted_on_the_whole_set_in_one_unit(tmp_path: Path) -> None:
    """Attack.craft_whole_set: AutoAttack's later stages batch what the earlier ones left, so a study crafts
    it in one unit for the set; its host units still run per shard, each on its slice (docs/cluster.md)."""
    result = study(write(tmp_path, WHOLE_SET), tmp_path, "--run-id", "whole")
    assert result.returncode == 0, result.stderr
    keys = set(journal_units(tmp_path / "whole"))
    assert {k for k in keys if k.startswith("craft/attack-00")} == {"craft/attack-00-autoattack-eps0/all"}
    shards = (0, 5, 10)
    assert {k for k in keys if k.startswith("craft/attack-01")} == {f"craft/attack-01-fgsm-eps0/{s}" for s in shards}
    host_units = {k for k in keys if k.startswith("host/attack-00")}
    assert host_units == {f"host/attack-00-autoattack-eps0/{s}" for s in shards}
    doc = json.loads((tmp_path / "whole/metrics.json").read_text())
    autoattack = next(e for e in doc["evaluations"] if e["attack"] == "autoattack")
    assert autoattack["models"]["float32"]["n"] == 12
    assert autoattack["perturbation"]["linf"]["max"] <= 0.1 + 1e-6


class RecordingExecutor:
    """A real executor (a Dask LocalCluster here) whose submissions and arrivals are written down in order."""

    def __init__(self, inner: object) -> None:
        self.inner, self.events = inner, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def submit(self, fn: object, *args: object, key: str, **kwargs: object) -> object:
        self.events.append(("submit", key))
        return self.inner.submit(fn, *args, key=key, **kwargs)

    def completed(self, handles: list) -> object:
        for handle, outcome in self.inner.completed(handles):
            self.events.append(("done", handle.key))
            yield handle, outcome


def test_defended_models_studies_run_beside_the_undefended_one_on_a_dask_cluster(tmp_path: Path) -> None:
    """No barrier: a given model's units are all submitted before the first unit of the run arrives, and a
    trained defense's as soon as its training arrives (before any other arrival). The given model is the
    undefended one, so its study's numbers are the undefended study's."""
    from host.study.cluster import open_executor
    from host.study.journal import Journal, experiment_fingerprint
    from host.study.runner import run_experiment

    given = GIVEN_MODEL[len(BASE):].replace('[[attack]]\nname = "fgsm"\neps = [0.1]\n', "")
    exp = load_experiment(write(tmp_path, with_pgd_at(train_images=50) + given))
    journal = Journal.start(tmp_path / "results.sqlite", experiment_fingerprint(exp), [], resume=False)
    with open_executor(None, 2, log=lambda _: None) as executor:
        recording = RecordingExecutor(executor)
        doc = run_experiment(exp, progress=False, journal=journal, executor=recording, log=lambda _: None)
    journal.close()
    events = recording.events
    first_done = next(i for i, (kind, _) in enumerate(events) if kind == "done")
    submitted = [i for i, (kind, key) in enumerate(events) if kind == "submit" and "defense-the same model:" in key]
    assert submitted and max(submitted) < first_done
    trained = next(i for i, (kind, key) in enumerate(events) if kind == "done" and "-train/" in key)
    assert events[trained + 1][0] == "submit" and "defense-pgd-at" in events[trained + 1][1]
    same, pgd_at = (doc["defended_models"][label] for label in sorted(doc["defended_models"], reverse=True))
    assert [e["models"] for e in same["evaluations"]] == [e["models"] for e in doc["evaluations"]]
    assert [e["attack"] for e in pgd_at["evaluations"]] == ["clean", "fgsm"] and not doc["summary"]["failed_defenses"]


def test_a_training_stopped_midway_goes_on_from_its_last_epoch(tmp_path: Path) -> None:
    """A run killed while a defense trains keeps that training's last epoch in the run's directory;
    --resume trains on from it, to the results of a run never stopped, and leaves no checkpoint behind."""
    import os
    import signal
    import time

    config = write(tmp_path, with_pgd_at(train_images=400).replace("epochs = 1", "epochs = 40"))
    whole = study(config, tmp_path, "--run-id", "whole")
    assert whole.returncode == 0, whole.stderr
    command = [sys.executable, "-m", "host.evaluate", "--config", str(config), "--out", str(tmp_path),
               "--no-progress", "--workers", "0"]
    proc = subprocess.Popen([*command, "--run-id", "cut"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = tmp_path / "cut/checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*/phase1/epoch-*/complete")) and proc.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before its training kept an epoch"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (phase,) = checkpoints.glob("*/phase1")
    kept = sorted(p.name for p in phase.iterdir() if (p / "complete").is_file())
    assert kept and kept[-1] < "epoch-00040", kept        # stopped midway, with an epoch kept
    resumed = subprocess.run([*command, "--resume", "cut"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"training pgd-at(eps=0.1, epochs=40): goes on from its checkpoint (epochs done per phase: " \
           f"{int(kept[-1][6:])};" in resumed.stderr
    assert not (tmp_path / "cut/checkpoints").exists()
    defended = [_without_timings(json.loads((tmp_path / run / "metrics.json").read_text())["defended_models"])
                for run in ("whole", "cut")]
    assert defended[0] == defended[1]


def _without_timings(document: object) -> object:
    """A metrics document without what the wall clock decides (its "run" and "seconds" entries)."""
    if isinstance(document, dict):
        return {k: _without_timings(v) for k, v in document.items() if k not in ("run", "seconds")}
    if isinstance(document, list):
        return [_without_timings(v) for v in document]
    return document


def test_a_dataset_of_other_inputs_is_refused_before_any_conversion(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset was checked against the float model only after the precisions were quantized (minutes on a
    large model)."""
    import host.quantization.quantize as quantization
    from host.study.runner import prepare

    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, np.uint8))
    config = BASE.replace('precisions = ["float32", "int8"]', 'precisions = ["float32", "int8", "int16x8"]') \
        .replace('path = "builtin:digits-test"\nnum = 12', f'path = "{tmp_path / "wide.npz"}"') \
        + '[dataset.representative]\npath = "builtin:digits-train"\nnum = 20\n'

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("a precision was quantized before the dataset was checked")

    monkeypatch.setattr(quantization, "quantize_cached", no_conversion)
    with pytest.raises(UserError, match=r"inputs of shape \(32, 32, 3\), but the float model digits_cnn.keras takes"):
        prepare(load_experiment(write(tmp_path, config)))


def test_a_study_dataset_with_nan_or_no_samples_is_refused(tmp_path: Path) -> None:
    """A config's dataset is read by load_slice, not the flags' loader: NaN passed its range check (every
    comparison with NaN is false), and an empty slice went on to the run."""
    from host.study.config import SliceSpec

    x = np.zeros((3, 8, 8, 1), np.float32)
    x[1, 2, 3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(3, np.int64))
    with pytest.raises(UserError, match="nan.npz: 1 input values are NaN or infinite"):
        load_slice(SliceSpec(tmp_path / "nan.npz", 0, None), (0.0, 1.0))
    with pytest.raises(UserError, match="nan.npz: no samples from 3"):
        load_slice(SliceSpec(tmp_path / "nan.npz", 3, None), (0.0, 1.0))


def test_a_study_dataset_of_strings_is_refused(tmp_path: Path) -> None:
    """Strings in 'x' or 'y' failed in load_slice's conversion, as a ValueError traceback."""
    from host.study.config import SliceSpec

    np.savez(tmp_path / "sx.npz", x=np.array([["a", "b"]] * 3), y=np.zeros(3, np.int64))
    np.savez(tmp_path / "sy.npz", x=np.zeros((3, 8, 8, 1), np.float32), y=np.array(["cat", "dog", "cat"]))
    with pytest.raises(UserError, match="sx.npz: 'x' holds <U1 values; it must hold numbers"):
        load_slice(SliceSpec(tmp_path / "sx.npz", 0, None), (0.0, 1.0))
    with pytest.raises(UserError, match="sy.npz: 'y' holds <U3 values; it must hold integer class indices"):
        load_slice(SliceSpec(tmp_path / "sy.npz", 0, None), (0.0, 1.0))
