"""Celery workers: the app, thin tasks over the Vault facade, and their metrics.

The library never imports this package; it adds its CLI commands and the `delete --async`
handoff through entry points. Nothing here is imported at package import, so `vault-store
--help` does not load Celery: use `workers.app.create_app`.
"""
