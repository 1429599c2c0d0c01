"""The JSON form of a head's decode settings (``deploy.json`` and checkpoints carry it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T", bound="SettingsDict")


class SettingsDict:
    """Mixin for frozen settings dataclasses: tuples become JSON lists and back; ``from_dict``
    refuses missing and unknown keys (naming the class), so a stale ``deploy.json`` fails loudly."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"{cls.__name__}: missing keys {missing}, unknown keys {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
