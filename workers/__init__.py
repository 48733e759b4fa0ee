"""Celery workers: the app, thin tasks over the Vault facade, and their metrics.

The library never imports this package; only the CLI's `worker`, `beat` and `enqueue` do.
"""

from workers.app import create_app

__all__ = ["create_app"]
