"""host.bench_attacks --oracles: the per-query timing of the query attacks' oracles, on the shipped digits models."""

from __future__ import annotations

import numpy as np
import pytest

from host.attacks import FloatModel, FloatOracle, ReferenceOracle
from host.bench_attacks import main, oracle_costs, oracle_table


def test_oracle_costs_time_every_oracle_and_count_its_queries(float_model: FloatModel,
                                                              oracle: ReferenceOracle) -> None:
    x = np.random.default_rng(0).random((5, *float_model.input_shape[1:]), dtype=np.float32)
    oracles = {"float32": FloatOracle(float_model), "int8": oracle}
    for each in oracles.values():
        each.reset_queries()
    rows = oracle_costs(oracles, x, singles=3)
    assert [name for name, _, _ in rows] == ["float32", "int8"]
    assert all(one > 0 and per > 0 for _, one, per in rows)
    # warm-up 2 + 3 single queries + one batch of 5
    assert all(each.queries == 10 for each in oracles.values())
    table = oracle_table(rows, len(x)).splitlines()
    assert table[0] == "| oracle | one query per call | per input in a batch of 5 |"
    assert table[2].startswith("| float32 | ") and table[2].endswith(" ms |")


def test_help_names_oracles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--oracles" in capsys.readouterr().out
