"""Registries of model parts: a YAML ``{type: Name, ...}`` mapping -> a module, with its keyword
arguments checked against the constructor (unknown keys are errors naming the config key). Errors
of a config's part (unknown type, unknown or derived keys, arguments the constructor refuses) are
``ConfigError``s, so the tools report them as config errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from pointformer.config import ConfigError


class Registry:
    """Named constructors of one kind of part (``"backbone3d"``, ``"head"``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., nn.Module]] = {}

    def register(self, cls: Callable[..., nn.Module] | None = None, *, name: str | None = None):
        """Registers ``cls`` under ``name`` (default its ``__name__``); usable as a decorator."""

        def add(c):
            key = name or c.__name__
            if key in self._entries and self._entries[key] is not c:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = c
            return c

        return add(cls) if cls is not None else add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., nn.Module]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} type {name!r}; registered: {self.names()}") from None

    def build(self, spec: Mapping[str, Any], where: str = "", **injected: Any) -> nn.Module:
        """Builds ``spec["type"]`` with ``spec``'s other keys plus ``injected`` (arguments the
        builder derives, e.g. ``in_channels``; a config may not set them). Raises ``ConfigError``
        naming ``where`` and the offending keys."""
        where = where or self.kind
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        try:
            cls = self.get(spec["type"])
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        params = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        clash = sorted(set(kwargs) & set(injected))
        if clash:
            raise ConfigError(f"{where}: {clash} are derived by the builder and cannot be set in the config")
        unknown = sorted(k for k in kwargs if k not in params)
        if unknown and not takes_any:
            settable = sorted(k for k in params if k not in injected and k != "self")
            raise ConfigError(f"{where}: unknown keys {unknown} for {spec['type']}; known: {settable}")
        injected = {k: v for k, v in injected.items() if k in params or takes_any}
        kwargs = {k: tuple(tuple(i) if isinstance(i, list) else i for i in v) if isinstance(v, list) else v
                  for k, v in kwargs.items()}  # fmt: skip
        try:
            return cls(**kwargs, **injected)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} ({spec['type']}): {e}") from e


VOXEL_ENCODERS = Registry("voxel_encoder")
BACKBONES_3D = Registry("backbone3d")
BEV_MAPPERS = Registry("bev")
BACKBONES_2D = Registry("backbone2d")
NECKS = Registry("neck")
HEADS = Registry("head")
