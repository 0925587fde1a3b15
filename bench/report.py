"""docs/benchmarks.md holds one section per benchmark; each run replaces only its own."""

from __future__ import annotations

from pathlib import Path

HEADER = "# Benchmarks\n\nEach section is written by the benchmark it names; see bench/README.md.\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` in the file between ``name``'s markers, keeping every other section."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
