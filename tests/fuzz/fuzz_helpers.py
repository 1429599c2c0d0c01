"""The fuzz property, the regression corpus, and byte mutations shared by the fuzz tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from hypothesis import strategies as st

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
# Examples per reader in the ``ci`` profile (the ``long`` profile's count applies to all instead).
CI_EXAMPLES = int(os.environ.get("POINTFORMER_FUZZ_CI_EXAMPLES", "60"))


def examples(ci: int = CI_EXAMPLES) -> int:
    """``max_examples`` for a test: ``ci`` in the ci profile, ``POINTFORMER_FUZZ_EXAMPLES`` in the long one."""
    if os.environ.get("POINTFORMER_FUZZ", "ci") == "ci":
        return ci
    return int(os.environ.get("POINTFORMER_FUZZ_EXAMPLES", "2000"))


def check(reader: str, data: bytes, run: Callable[[bytes], object], allowed: tuple[type[BaseException], ...]) -> str:
    """Runs ``run(data)``; returns ``"ok"`` or the name of the allowed error it raised. Any other
    exception is re-raised, after ``data`` is saved as a regression input of ``reader`` in the long
    profile (``POINTFORMER_FUZZ=long``), so later runs replay it."""
    try:
        run(data)
    except allowed as e:
        return type(e).__name__
    except Exception:
        if os.environ.get("POINTFORMER_FUZZ") == "long":
            folder = REGRESSIONS / reader
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"crash-{hashlib.sha1(data).hexdigest()[:16]}.bin").write_bytes(data)
        raise
    return "ok"


@st.composite
def mutated(draw, seed: bytes, max_edits: int = 8) -> bytes:
    """``seed`` with a few edits: byte flips, overwrites, insertions, deletions, or a truncation
    (the damage a disk, a download or a wrong file gives)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_edits))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


class Tally:
    """How the fuzzed inputs of one reader ended (printed by the tests with ``-s``, and summed in
    the report of issue 18)."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.outcomes: dict[str, int] = {}

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __str__(self) -> str:
        total = sum(self.outcomes.values())
        return f"fuzz {self.reader}: {total} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
