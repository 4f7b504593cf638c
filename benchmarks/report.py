"""Where results go: `docs/benchmarks.json` (merged by key) and generated sections of docs/BENCHMARKS.md.

`make bench` and `make chaos` each own some keys of the JSON file and one generated section of the
Markdown file (between `<!-- NAME:start -->` and `<!-- NAME:end -->`); the hand-written text around
the sections is kept as is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"
JSON_PATH = DOCS / "benchmarks.json"
MD_PATH = DOCS / "BENCHMARKS.md"


def merge_json(values: dict[str, Any], path: Path = JSON_PATH) -> dict[str, Any]:
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return current


def replace_section(name: str, body: str, path: Path = MD_PATH) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")
