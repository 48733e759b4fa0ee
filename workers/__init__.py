"""Celery workers: the app, thin tasks over the Vault facade, and their metrics.

The library never imports this package; only the CLI's `worker`, `beat` and `enqueue` do. They
come in through entry points, so importing the package must not load Celery: `create_app` is
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from workers.app import create_app

        return create_app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
