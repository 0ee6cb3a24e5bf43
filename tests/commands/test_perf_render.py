"""host.perf's docs/performance.md: the cycles column, and the hand-written part it keeps."""

from __future__ import annotations

from pathlib import Path

from host.perf import HAND_WRITTEN, Row, kept_text, render


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
