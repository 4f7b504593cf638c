"""Options several commands share, defined once so their names and help read the same everywhere."""

from __future__ import annotations

from typing import Any

import typer


def flag(name: str, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """An off-by-default switch such as `--json`."""
    return typer.Option(False, name, help=help)


def json_flag(help: str = "Print JSON.") -> Any:  # noqa: A002
    return flag("--json", help)
