"""benchmarks/report.py: a script's --write replaces only its own marked section."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import write_section


def test_a_section_is_added_once_then_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nbefore\n")
    write_section("faults", "| a | 1 |", doc)
    assert (
        doc.read_text()
        == "# Benchmarks\n\nbefore\n\n<!-- faults:begin -->\n| a | 1 |\n<!-- faults:end -->\n"
    )
    doc.write_text(doc.read_text() + "\nafter\n")
    write_section("faults", "| a | 2 |", doc)
    text = doc.read_text()
    assert "| a | 1 |" not in text
    assert text.count("<!-- faults:begin -->") == 1
    assert text.index("before") < text.index("| a | 2 |") < text.index("after")
