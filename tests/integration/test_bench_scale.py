"""Issue 16 item 4's scale curve, tiny: ``benchmarks/scale.py`` as ``make bench`` runs it, with
sizes of seconds; its ``--write`` goes to a copy of docs/benchmarks.md, and the section must
be there with a row per size, the memory per device and where it goes."""

from __future__ import annotations

from pathlib import Path

from tests.support.artifacts import assert_script_passes, doc_section


def test_scale_benchmark_writes_a_row_per_enrolled_size(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    out = assert_script_passes(
        "benchmarks/scale.py", "--sizes", "40", "200", "--active", "20", "--messages", "60",
        "--repeats", "1", "--threads", "2", "--write", "--doc", str(doc), timeout=300,
    )  # fmt: skip
    section = doc_section(doc.read_text(), "scale")
    assert section.strip() == out.strip()
    rows = [line for line in section.splitlines() if line.startswith(("| 40 |", "| 200 |"))]
    assert len(rows) == 2, section
    assert "| 200, empty journal |" in section  # the control row
    assert "python benchmarks/scale.py --sizes 40 200" in section  # the command that made it
    assert "Bulk enrolment, bypassing onboarding" in section
    assert "per enrolled device" in section
    assert "| Aead" in section  # the profile of where the memory goes
