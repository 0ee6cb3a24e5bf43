"""Study configs: unknown keys in every section are errors (with a close-match suggestion), and [cluster].

Parse only: no model is loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from host.core.errors import UserError
from host.core.paths import ROOT
from host.study.config import Experiment, load_experiment
from host.study.journal import experiment_fingerprint

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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, quick: bool = False) -> Experiment:
    return load_experiment(write(tmp_path, text), quick=quick)


def test_the_base_config_loads(tmp_path: Path) -> None:
    exp = load(tmp_path, BASE)
    assert exp.dataset.num == 12 and exp.chip_num is None


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace("num = 12", "nmu = 20"),
     r"\[dataset\] has unknown key 'nmu'; known: path, start, num, .*; did you mean 'num'\?"),
    ('[experiment]\nname = "x"\nseeed = 1\n' + BASE, r"\[experiment\] has unknown key 'seeed'.*did you mean 'seed'\?"),
    (BASE.replace('precisions = ["float32", "int8"]', 'precision = ["float32", "int8"]'),
     r"\[model\] has unknown key 'precision'.*did you mean 'precisions'\?"),
    (BASE + '[dataset.representative]\npath = "builtin:digits-train"\nstrat = 3\n',
     r"\[dataset\.representative\] has unknown key 'strat'.*did you mean 'start'\?"),
    (BASE + '[chip]\nboard = "mps2-an386"\nnum_inputs = 5\n', r"\[chip\] has unknown key 'num_inputs'"),
    (BASE + '[chip]\nboard = "mps2-an386"\nplaces = "x"\n', r"\[chip\] has unknown key 'places'.*'place'\?"),
    (BASE + "[cluster]\nworker = 2\n", r"\[cluster\] has unknown key 'worker'.*did you mean 'workers'\?"),
    (BASE + "[bitwidth]\nbits = [4]\nmode = ['weights']\n", r"\[bitwidth\] has unknown key 'mode'.*'modes'\?"),
    (BASE + '[[defense]]\nname = "pgd-at"\ndata = { path = "builtin:digits-train", nmu = 10 }\n',
     r"\[\[defense\]\] 'pgd-at' data has unknown key 'nmu'.*did you mean 'num'\?"),
    (BASE + "[quick]\ndataset_nmu = 5\n", r"\[quick\] has unknown key 'dataset_nmu'.*did you mean 'dataset_num'\?"),
    (BASE + "[quick]\ndatset_num = 5\n", r"\[quick\] has unknown key 'datset_num'.*did you mean 'dataset_num'\?"),
    (BASE + "[quick]\nattack_max_eps = 0.1\n", r"\[quick\] has unknown key 'attack_max_eps'"),
    (BASE + "[quick]\ncluster_shards = 5\n", r"\[quick\] has unknown key 'cluster_shards'.*'cluster_shard'\?"),
    (BASE + '[[attack]]\nname = "pgd"\neps = [0.1]\n[quick.attack_params]\npdg = { restarts = 1 }\n',
     r"\[quick\.attack_params\] \(attacks of this config\) has unknown key 'pdg'.*did you mean 'pgd'\?"),
    (BASE.replace("num = 12", "nmu = 20\nstrat = 1"), r"\[dataset\] has unknown keys 'nmu', 'strat'.*"
     r"did you mean 'num' for 'nmu', 'start' for 'strat'\?"),
    (BASE.replace("num = 12", "xyzzy = 1"), r"(?m)\[dataset\] has unknown key 'xyzzy'; known: [a-z_, ]+$"),
])
def test_an_unknown_key_names_its_section_and_the_close_match(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load(tmp_path, text)


def test_quick_keys_are_checked_also_without_quick(tmp_path: Path) -> None:
    text = BASE + "[quick]\nchip_nmu = 5\n"
    for quick in (False, True):
        with pytest.raises(UserError, match=r"\[quick\] has unknown key 'chip_nmu'"):
            load(tmp_path, text, quick=quick)


@pytest.mark.parametrize(("extra", "message"), [
    ('[[attack]]\nname = "pgd"\neps = [0.1]\nmax_iters = 3\n', r"'pgd' has no parameter\(s\) max_iters"),
    ('[[attack]]\nname = "square-linf"\neps = [0.1]\nnmu = 3\n', r"'square-linf' has no parameter\(s\) nmu"),
    ('[[defense]]\nname = "feature-squeezing"\nbit_dpeth = 3\n',
     r"'feature-squeezing' has no parameter\(s\) bit_dpeth"),
    ('[[defense]]\nname = "median-smoothing"\nwindow = 2\non_chip = true\n', "no \\[chip\\] board"),
])
def test_attack_and_defense_parameters_are_checked_by_their_registries(tmp_path: Path, extra: str,
                                                                       message: str) -> None:
    with pytest.raises(UserError, match=message):
        load(tmp_path, BASE + extra)


def test_cluster_defaults(tmp_path: Path) -> None:
    exp = load(tmp_path, BASE)
    assert (exp.shard, exp.cluster_scheduler, exp.cluster_workers) == (50, None, None)


@pytest.mark.parametrize(("table", "expected"), [
    ('scheduler = "tcp://10.0.0.5:8786"', ("tcp://10.0.0.5:8786", None, 50)),
    ('scheduler = "tls://sched.lab:8786"\nshard = 10', ("tls://sched.lab:8786", None, 10)),
    ("workers = 4", (None, 4, 50)),
    ("workers = 0\nshard = 1", (None, 0, 1)),
    ("shard = 200", (None, None, 200)),
])
def test_cluster_is_parsed(tmp_path: Path, table: str, expected: tuple[object, ...]) -> None:
    exp = load(tmp_path, BASE + "[cluster]\n" + table + "\n")
    assert (exp.cluster_scheduler, exp.cluster_workers, exp.shard) == expected


@pytest.mark.parametrize(("table", "message"), [
    ('scheduler = "10.0.0.5:8786"', "cluster.scheduler must be a Dask scheduler address"),
    ('scheduler = "http://10.0.0.5:8786"', "cluster.scheduler must be"),
    ('scheduler = "tcp://"', "cluster.scheduler must be"),
    ("scheduler = 8786", "cluster.scheduler must be"),
    ("workers = -1", r"cluster.workers must be an integer >= 0, got -1"),
    ('workers = "4"', r"cluster.workers must be an integer >= 0"),
    ("workers = true", r"cluster.workers must be an integer >= 0"),
    ("shard = 0", r"cluster.shard must be an integer >= 1, got 0"),
    ("shard = 2.5", r"cluster.shard must be an integer >= 1"),
    ('scheduler = "tcp://h:8786"\nworkers = 2', "not both"),
])
def test_bad_cluster_tables_are_refused(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load(tmp_path, BASE + "[cluster]\n" + table + "\n")


def test_cluster_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"\[cluster\] must be a table"):
        load(tmp_path, "cluster = 3\n" + BASE)


def test_quick_overrides_cluster_keys(tmp_path: Path) -> None:
    text = BASE + "[cluster]\nworkers = 8\nshard = 100\n[quick]\ncluster_workers = 0\ncluster_shard = 5\n"
    full, quick = load(tmp_path, text), load(tmp_path, text, quick=True)
    assert (full.cluster_workers, full.shard) == (8, 100)
    assert (quick.cluster_workers, quick.shard) == (0, 5)
    # without a [cluster] table too
    quick = load(tmp_path, BASE + "[quick]\ncluster_shard = 7\n", quick=True)
    assert quick.shard == 7 and quick.cluster_workers is None
    with pytest.raises(UserError, match="cluster.shard must be an integer >= 1"):
        load(tmp_path, BASE + "[quick]\ncluster_shard = 0\n", quick=True)


def test_shard_is_in_repr_and_the_fingerprint_but_where_it_runs_is_not(tmp_path: Path) -> None:
    exp = load(tmp_path, BASE + '[cluster]\nscheduler = "tcp://10.0.0.5:8786"\nshard = 25\n')
    text = repr(exp)
    assert "shard=25" in text
    assert "cluster_scheduler" not in text and "cluster_workers" not in text and "10.0.0.5" not in text
    fingerprint = experiment_fingerprint(exp)
    elsewhere = dataclasses.replace(exp, cluster_scheduler=None, cluster_workers=3)
    assert experiment_fingerprint(elsewhere) == fingerprint
    assert experiment_fingerprint(dataclasses.replace(exp, shard=50)) != fingerprint


def test_chip_num_defaults_to_every_input(tmp_path: Path) -> None:
    chip = '[chip]\nboard = "mps2-an386"\nprecisions = ["int8"]\n'
    assert load(tmp_path, BASE + chip).chip_num is None
    assert load(tmp_path, BASE + chip + "num = 5\n").chip_num == 5
    with pytest.raises(UserError, match="chip.num must be an integer >= 1"):
        load(tmp_path, BASE + chip + "num = 0\n")
