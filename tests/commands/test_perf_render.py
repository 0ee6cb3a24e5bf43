"""host.perf's docs/performance.md: the cycles column, and the hand-written part it keeps."""

from __future__ import annotations

from pathlib import Path

from host.perf import HAND_WRITTEN, Row, kept_text, render, target_verdict


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
