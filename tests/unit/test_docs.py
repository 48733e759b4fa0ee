"""The docs that cite tests cite tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_threat_model_exists() -> None:
    text = (ROOT / "threat-model.md").read_text()
    cited = re.findall(r"`([\w/]+\.py)::(\w+)`", text)
    short = re.findall(r"`::(\w+)`", text)
    assert len(cited) >= 15
    last_file = None
    missing = []
    for file, name in cited:
        last_file = file
        if not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.MULTILINE):
            missing.append(f"{file}::{name}")
    all_tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing += [name for name in short if f"def {name}(" not in all_tests]
    assert last_file is not None
    assert missing == []


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Command line", 1)[1].split("```", 2)[1]
    return [line.split("#", 1)[0].strip() for line in section.splitlines() if line.strip()]


def _leaf_commands() -> dict[str, click.Command]:
    from vault_store.cli import main

    found: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: str, ctx: click.Context) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                walk(command, path, click.Context(command, parent=ctx))
            else:
                found[path] = command

    walk(main, "", click.Context(main))
    return found


def test_the_readme_command_list_matches_the_cli() -> None:
    commands = _leaf_commands()
    documented: dict[str, set[str]] = {}
    for line in _readme_commands():
        for usage in line.split(" | "):
            words = usage.removeprefix("vault-store ").split()
            path = next(
                (
                    p
                    for p in sorted(commands, key=len, reverse=True)
                    if words[: len(p.split())] == p.split()
                ),
                None,
            )
            assert path is not None, f"README names an unknown command: {usage}"
            documented.setdefault(path, set()).update(
                re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage)
            )
    assert sorted(commands) == sorted(documented), "commands missing from, or extra in, the README"
    unknown = {}
    for path, options in documented.items():
        if path in ("worker", "beat"):  # they pass Celery's own options through
            continue
        known = {
            opt for param in commands[path].params for opt in param.opts + param.secondary_opts
        }
        extra = options - known - {"-h", "--help"}
        if extra:
            unknown[path] = sorted(extra)
    assert unknown == {}


def test_the_readme_settings_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(VAULT_STORE_[A-Z_]+)`", table))
    source = (ROOT / "vault_store" / "settings.py").read_text()
    read = set(re.findall(r'"(VAULT_STORE_[A-Z_]+)"', source))
    assert read, "settings.py reads no VAULT_STORE_* variable?"
    assert sorted(read - documented) == [], "settings missing from the README table"
    assert sorted(documented - read) == [], "README documents settings that are not read"
