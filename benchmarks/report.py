"""Write a benchmark's results into its own marked section of docs/benchmarks.md.

A section is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; a script run
with ``--write`` replaces it (adding the markers at the end of the file the first time), so the
figures in the docs are the ones the command printed, with the command that printed them.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, text: str, path: Path = DOCS) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    doc = path.read_text()
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)
