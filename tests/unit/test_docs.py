"""The docs that cite tests cite tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

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
