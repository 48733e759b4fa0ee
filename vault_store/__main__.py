"""`python -m vault_store` runs the CLI."""

from vault_store.cli import main

main()
