"""host.evaluate: clear errors for bad input, reproducible metrics, mismatch reporting."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host import evaluate
from host.backends import backend as backends
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_MODEL, ROOT
from host.study import units

SMALL = ["--num", "12", "--eps", "0.1", "--attacks", "fgsm,pgd", "--attack-param", "pgd.max_iter=4", "--no-progress"]


def run_module(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.evaluate", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, proc.stderr
    assert message in error_lines[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "0"], "--eps: 0 must be a positive"),
        (["--eps", "-0.1"], "--eps: -0.1 must be a positive"),
        (["--eps", "0.1,abc"], "'abc' is not a number"),
        (["--eps", "nan"], "positive finite"),
        (["--eps", ","], "at least one radius"),
        (["--attacks", "fgsm,carlini"], "unknown attack 'carlini'"),
        (["--num", "0"], "--num must be at least 1"),
        (["--model", "missing.tflite"], "model file not found: missing.tflite"),
        (["--model", "models/digits_cnn.keras"], "--model must be a .tflite file"),
        (["--float-model", "missing.keras"], "float model not found"),
        (["--attack-param", "pgd.max_iter=zero"], "max_iter must be int"),
        (["--attack-param", "pgd.steps=3"], "has no parameter(s) steps"),
        (["--attack-param", "fgsm.eps=3"], "set eps with --eps"),
        (["--attack-param", "noise.seed=1", "--attacks", "fgsm"], "is not in --attacks"),
        (["--run-id", "../escape"], "is not a plain name"),
        (["--devices", "0"], "--devices must be at least 1"),
        (["--devices", "2"], "--devices 2 needs --backend device"),
        (["--window", "0"], "--window must be at least 1"),
        (["--max-restarts", "-1"], "--max-restarts must be >= 0"),
        (["--out", "README.md"], "--out README.md: it is not a directory"),
        (["--out", "README.md/runs"], "--out README.md/runs: README.md is not a directory"),
        (["--resume", "x", "--config", "configs/digits-quick.toml"], "--resume: no run journal"),
        (["--config", "configs/digits-quick.toml", "--num", "5"], "--num, --backend cannot be combined with --config"),
        (["--config", "configs/digits-quick.toml", "--seed", "3"], "--backend, --seed cannot be combined with"),
    ],
)
def test_bad_arguments_fail_cleanly(args: list[str], message: str) -> None:
    assert_clean_failure(run_module(*args, "--backend", "reference"), message)


@pytest.mark.parametrize("eps", ["1", "0.1,1.5"])
def test_linf_eps_covering_the_input_range_is_an_error(tmp_path: Path, eps: str) -> None:
    """An L∞ radius >= the input range (1 for the flags' 0..1 images) allows any input: one error, no run."""
    proc = run_module("--eps", eps, "--attacks", "fgsm,pgd", "--backend", "reference", "--out", str(tmp_path))
    assert_clean_failure(proc, "covers the whole input range [0, 1]")
    assert "hint:" in proc.stderr and not any(tmp_path.iterdir())


def test_l2_eps_above_the_input_range_is_fine() -> None:
    """The range bound is an L∞ one: an L2 radius of 1.5 on 0..1 images is an ordinary budget."""
    evaluate.check_linf_eps(("square-l2",), (1.5,), (0.0, 1.0))
    with pytest.raises(UserError, match="covers the whole input range"):
        evaluate.check_linf_eps(("square-l2", "pgd"), (0.1, 1.0), (0.0, 1.0))


def test_config_linf_eps_covering_the_input_range_is_an_error(tmp_path: Path) -> None:
    """The same check in a study config: [dataset] input_range [0, 255], an L∞ eps of 255 fails at load."""
    text = (ROOT / "configs" / "digits-quick.toml").read_text().replace('"../models/', f'"{ROOT}/models/')
    text = text.replace("input_range = [0.0, 1.0]", "input_range = [0, 255]")
    config = tmp_path / "big-eps.toml"
    config.write_text(text.replace("eps = [0.05, 0.1, 0.2]\nmax_iter = 10", "eps = [8, 255]\nmax_iter = 10"))
    proc = run_module("--config", str(config), "--out", str(tmp_path / "out"), "--run-id", "r", timeout=120)
    assert_clean_failure(proc, "attack 'pgd': eps 255 covers the whole input range [0, 255]")
    assert "hint:" in proc.stderr and not (tmp_path / "out").exists()


def test_unknown_attack_message_lists_registry() -> None:
    proc = run_module("--attacks", "carlini", "--backend", "reference")
    assert "available attacks: " in proc.stderr and "fgsm" in proc.stderr and "pgd" in proc.stderr


def test_num_beyond_dataset() -> None:
    assert_clean_failure(run_module("--num", "451", "--backend", "reference"), "more than the 450 samples")


def test_model_not_on_board_fails_cleanly(tmp_path: Path) -> None:
    """A model that cannot be the flashed one (its hash is unique) must stop with one clear error."""
    other = tmp_path / "other.tflite"
    other.write_bytes(DEFAULT_MODEL.read_bytes() + b"\0" * 8)  # trailing bytes: same graph, new sha256
    proc = run_module("--model", str(other), "--num", "2", "--no-progress", "--out", str(tmp_path))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: " in proc.stderr


def test_help_and_list_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from host.core.errors import run_cli\nfrom host.evaluate import main\n"
        "assert run_cli(main, ['--list-attacks']) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'art' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "fgsm" in proc.stdout and "white-box" in proc.stdout
    assert run_module("--help").returncode == 0


def _deterministic_part(out_dir: Path) -> dict:
    """metrics.json without what measures time (the run, the seconds per evaluation); NaN (a cosine
    without a gradient) compares equal to itself through the JSON text."""
    doc = json.loads((out_dir / "metrics.json").read_text())
    doc.pop("run")
    for evaluation in doc["evaluations"]:
        evaluation.pop("seconds", None)
    return json.loads(json.dumps(doc, sort_keys=True).replace("NaN", '"NaN"'))


def test_same_seed_gives_identical_results(tmp_path: Path) -> None:
    for run_id in ("a", "b"):
        argv = [*SMALL, "--backend", "reference", "--out", str(tmp_path), "--run-id", run_id]
        assert run_cli(evaluate.main, argv) == 0
    first, second = _deterministic_part(tmp_path / "a"), _deterministic_part(tmp_path / "b")
    assert first == second
    preds_a, preds_b = np.load(tmp_path / "a/predictions.npz"), np.load(tmp_path / "b/predictions.npz")
    assert sorted(preds_a.files) == sorted(preds_b.files)
    assert all(np.array_equal(preds_a[k], preds_b[k]) for k in preds_a.files)

    evals = {(e["attack"], e["eps"]): e for e in first["evaluations"]}
    assert set(evals) == {("clean", 0.0), ("fgsm", 0.1), ("pgd", 0.1)}
    assert evals[("pgd", 0.1)]["params"]["max_iter"] == 4
    # On the reference backend the "chip" is TFLite Micro itself, so chip = reference proves nothing here
    # (bit-exactness is checked by test_native_engine_backend_end_to_end and on QEMU by test_resume.py's
    # baseline); what this run guarantees is that every inference was made: 3 evaluations x 12 samples.
    assert first["config"]["backend"] == "reference" and first["summary"]["inferences"] == 36
    assert [e["n"] for e in first["evaluations"]] == [12, 12, 12]
    assert evals[("clean", 0.0)]["attack_success_float"] is None
    assert evals[("fgsm", 0.1)]["float_accuracy"] < evals[("clean", 0.0)]["float_accuracy"]
    assert evals[("fgsm", 0.1)]["linf_float"] <= 0.1 + 1e-6
    assert "| pgd | 0.1 |" in (tmp_path / "a/report.md").read_text()


@pytest.mark.slow   # 10 s; the native engine's verdict is test_cli_flash_check.py's, its bytes tests/engine's
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_native_engine_backend_end_to_end(tmp_path: Path) -> None:
    """The firmware engine (host-native build) agrees byte for byte with TFLite Micro under attack."""
    proc = run_module(*SMALL, "--backend", "native", "--out", str(tmp_path), "--run-id", "native")
    assert proc.returncode == 0, proc.stderr
    assert "chip vs reference: bit-exact (36/36 identical)" in proc.stdout
    assert (tmp_path / "native/report.md").exists()
    doc = json.loads((tmp_path / "native/metrics.json").read_text())
    assert doc["config"]["backend"] == "native" and doc["summary"]["bit_exact"]


class CorruptingBackend(backends.ReferenceBackend):
    """A 'chip' that gets sample 3 of every evaluation wrong by one LSB."""

    name = "corrupt"

    def __init__(self, model: backends.ModelIO) -> None:
        super().__init__(model)
        self.count = 0

    def run(self, x_q: np.ndarray) -> backends.Inference:
        result = super().run(x_q)
        index, self.count = self.count % 5, self.count + 1
        if index != 3:
            return result
        output = bytearray(result.output)
        output[-1] ^= 1
        return backends.Inference(bytes(output), 1000 + index, None)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi (make deps)")
@pytest.mark.usefixtures("flashed_default_board")   # host.evaluate reads the flashed board's manifest
def test_chip_mismatch_reported_with_index_and_bytes(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    @contextlib.contextmanager
    def corrupting_chip(spec, model, plugin=None):  # noqa: ANN001, ANN202
        yield CorruptingBackend(model)

    monkeypatch.setattr(units, "_open_chip", corrupting_chip)
    argv = ["--num", "5", "--attacks", "none", "--no-progress", "--out", str(tmp_path), "--run-id", "bad",
            "--workers", "0"]   # the units run in this process, where the chip is patched
    assert run_cli(evaluate.main, argv) == 1
    captured = capsys.readouterr()
    assert "error: the chip's outputs differ from the TFLite Micro reference in 1 inference(s)" in captured.err
    assert "MISMATCH clean: first mismatch at sample 3" in captured.out
    agreement = json.loads((tmp_path / "bad/metrics.json").read_text())["evaluations"][0]["chip_reference_agreement"]
    assert agreement["identical"] == 4 and agreement["of"] == 5
    first = agreement["first_mismatch"]
    assert first["sample"] == 3 and first["chip"] != first["reference"]
    assert len(bytes.fromhex(first["chip"])) == 10
    assert "first mismatch at sample 3" in (tmp_path / "bad/report.md").read_text()
