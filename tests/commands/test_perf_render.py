"""host.perf's docs/performance.md: the cycles column, and the hand-written part it keeps."""

from __future__ import annotations

from pathlib import Path

from host.perf import HAND_WRITTEN, Cost, PrecisionRow, Row, kept_text, precision_verdict, render, target_verdict


def test_render_adds_cycles_and_keeps_the_hand_written_part(tmp_path: Path) -> None:
    rows = [Row("ResNet-8 (IC)", "mps2-an386", 100, 50, 10, 20, cycles=(60, 70)),
            Row("ResNet-8 (IC)", "mps2-an500", 100, 40, 10, 20)]
    doc = tmp_path / "performance.md"
    doc.write_text("old generated table\n" + HAND_WRITTEN + "\n\n## Estimated cycles\n\nkept by hand\n")
    text = render(rows, 1.0, kept_text(doc))
    assert "| ResNet-8 (IC) | mps2-an386 | 100 | 50 | 2.00× | 60 – 70 (1.20–1.40) | 10 | 20 |" in text
    assert "| ResNet-8 (IC) | mps2-an500 | 100 | 40 | 2.50× | – | 10 | 20 |" in text
    assert "old generated table" not in text
    assert text.endswith(HAND_WRITTEN + "\n\n## Estimated cycles\n\nkept by hand\n")
    assert kept_text(tmp_path / "absent.md") == ""


def test_render_judges_the_cycle_targets_on_the_whole_estimate() -> None:
    rows = [Row("ResNet-8 (IC)", "mps2-an386", 100, 50, 10, 20, cycles=(12_956_802, 13_367_426)),
            Row("DS-CNN KWS", "mps2-an386", 100, 50, 10, 20, cycles=(4_150_000, 4_250_000)),
            Row("ToyCar AD", "mps2-an386", 100, 50, 10, 20, cycles=(464_797, 480_745)),
            Row("ToyCar AD", "mps2-an500", 100, 50, 10, 20)]
    text = render(rows, 1.0)
    assert "| ResNet-8 (IC) | 19.82 M (ST X-CUBE-AI 9.0) | ≤ 16.00 M | 12.96 M – 13.37 M | **met** |" in text
    assert "| DS-CNN KWS | 5.18 M (ST X-CUBE-AI 9.0) | ≤ 4.20 M | 4.15 M – 4.25 M | met at P = 1 only |" in text
    toycar = "| ToyCar AD | 0.486 M (Plumerai 2023.05) | ≤ 0.400 M | 0.465 M – 0.481 M | not met: 1.16× the target |"
    assert toycar in text
    assert "VWW" not in text.split("Cycle targets")[1].split("Targets (issue 6)")[0]   # not measured: no row
    assert target_verdict(10, 10, 10) == "**met**"
    assert render([Row("ResNet-8 (IC)", "mps2-an500", 100, 50, 10, 20)], 1.0).count("Cycle targets") == 0


def test_render_judges_the_int16x8_target_on_instructions_and_every_cycle_estimate() -> None:
    m4 = PrecisionRow("mps2-an386", Cost(8_055_920, (12_958_631, 13_369_511)),
                      Cost(9_544_840, (15_908_941, 16_444_681)))
    m7 = PrecisionRow("mps2-an500", Cost(8_044_800), Cost(11_581_320))
    m55 = PrecisionRow("mps3-an547", Cost(3_755_531), Cost(6_112_906))
    text = render([], 1.0, precision=[m4, m7, m55])
    assert ("| mps2-an386 | 8,055,920 | 9,544,840 | 1.185× | 12,958,631 – 13,369,511 | 15,908,941 – 16,444,681 | "
            "1.228× / 1.230× | ≤ 1.25× | **met** |") in text
    assert "| mps2-an500 | 8,044,800 | 11,581,320 | 1.440× | – | – | – | ≤ 1.25× | not met: 1.15× the target |" in text
    assert "| mps3-an547 | 3,755,531 | 6,112,906 | 1.628× | – | – | – | ≤ 2.2× | **met** |" in text
    late = PrecisionRow("mps2-an386", Cost(100, (100, 100)), Cost(120, (120, 126)))   # P = 3 decides
    assert precision_verdict(late) == "not met: 1.01× the target"
    assert "int16x8 against int8" not in render([], 1.0)
