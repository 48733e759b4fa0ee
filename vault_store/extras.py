"""Optional extras: import a module an extra provides, or say which extra to install."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from vault_store.errors import ConfigError


class MissingExtra(ConfigError):
    """A feature needs packages of an extra that is not installed (exit 2 on the CLI)."""

    def __init__(self, extra: str, feature: str, missing: str) -> None:
        super().__init__(
            f"{feature}: {missing} is not installed; it comes with the {extra!r} extra: "
            f"pip install 'vault-store[{extra}]'"
        )
        self.extra = extra


def import_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import `module`; if it or a package it needs is missing, MissingExtra names the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(extra, feature, exc.name or module) from None


def plugin(group: str, name: str, *, extra: str, feature: str) -> Any:
    """The object a package registered under entry point `group`/`name` (how the library uses
    the top-level `workers` package without importing it by name)."""
    for point in entry_points(group=group, name=name):
        try:
            return point.load()
        except ModuleNotFoundError as exc:
            raise MissingExtra(extra, feature, exc.name or point.value) from None
    raise MissingExtra(extra, feature, f"the {group}:{name} entry point")
