"""One line of `zoho-cdc doctor`: a dependency, whether it is right, and the fix in one sentence.

A check is `ok`, `fail` (the fix says what to do) or `unknown`: Zoho offers no way to read the fact
(the reference marks it UNCONFIRMED), so the line says "cannot check" and why instead of guessing.
Only `fail` makes the exit code non-zero; `fatal` marks what `zoho-cdc run` refuses to start on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

State = Literal["ok", "fail", "unknown"]
MARKS: dict[State, str] = {"ok": "✓", "fail": "✗", "unknown": "?"}


@dataclass(frozen=True)
class Check:
    area: str  # postgres | kafka | connect | zoho
    name: str
    state: State
    detail: str  # what was found, or for a failure the sentence with its fix
    fatal: bool = False  # `zoho-cdc run` refuses to start on it

    @property
    def failed(self) -> bool:
        return self.state == "fail"

    def line(self) -> str:
        return f"{MARKS[self.state]} {self.area:<8} {self.name}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ok(area: str, name: str, detail: str) -> Check:
    return Check(area, name, "ok", detail)


def fail(area: str, name: str, detail: str, *, fatal: bool = False) -> Check:
    return Check(area, name, "fail", detail, fatal)


def cannot_check(area: str, name: str, why: str) -> Check:
    return Check(area, name, "unknown", f"cannot check: {why}")


def mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"
