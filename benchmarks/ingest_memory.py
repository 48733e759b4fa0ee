"""Peak memory of parsing and sealing one message, over its decompressed size, per shape.

Run:  python benchmarks/ingest_memory.py [--json]

Each message is parsed (validate + scan) and sealed into typed parts in a fresh subprocess; the
child reports its peak RSS growth (`resource.getrusage` max RSS, minus the RSS after imports and
after building the message) and the factor over the decompressed body. Shapes: every real
recording in ../shared/data/recordings (one message per recording, whole), and adversarial ones
of about 8 MB: many tiny objects, one long string, deep nesting (10,000 levels) with a crumb.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADVERSARIAL_BYTES = 8 * 1024 * 1024
CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'


def body_of(shape: str) -> bytes:
    """The decompressed body of shape `shape` (a recording name or an adversarial shape)."""
    if shape == "tiny objects":
        # 900,000 events: just under the 1,000,000-event cap (more is refused unscanned).
        return b"[" + b'{"a":1},' * 900_000 + CRUMB + b"]"
    if shape == "long string":
        return b'[{"type":3,"data":{"s":"' + b"x" * ADVERSARIAL_BYTES + b'"}},' + CRUMB + b"]"
    if shape == "deep nesting":
        depth = 10_000
        pad = b'{"type":3,"data":{"p":"' + b"y" * (ADVERSARIAL_BYTES - 2 * depth) + b'"}}'
        deep = b'{"type":2,"data":{"node":' + b"[" * depth + b"]" * depth + b"}}"
        return b"[" + deep + b"," + pad + b"," + CRUMB + b"]"
    from vault_store.services.samples import find_recordings_dir, load_recordings

    directory = find_recordings_dir()
    assert directory is not None, "the real recordings were not found"
    (recording,) = [r for r in load_recordings(directory) if r.name == shape]
    return orjson.dumps(recording.events)


def child(shape: str) -> None:
    """Measure one shape in this (fresh) process and print JSON."""
    from vault_store import LocalBlobStore, LocalKms, Vault
    from vault_store.catalog import Catalog
    from vault_store.core.message import parse_message

    # The message was built by the parent: building it here would set the high-water mark.
    raw = Path(shape).read_bytes()
    with tempfile.TemporaryDirectory() as work:
        catalog = Catalog(f"sqlite:///{work}/c.db")
        catalog.migrate()
        vault = Vault(
            catalog=catalog,
            blob_store=LocalBlobStore(Path(work) / "b"),
            kms=LocalKms(Path(work) / "k.json"),
            typed_parts=True,
        )
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        segment = parse_message(raw)
        size = len(segment.body)
        vault.ingest_segment(segment)
        vault.flush()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        vault.close()
    growth = max(peak - baseline, 0) * 1024
    print(json.dumps({"shape": shape, "decompressed": size, "peak_growth": growth}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from vault_store.services.samples import find_recordings_dir, load_recordings

    directory = find_recordings_dir()
    names = [r.name for r in load_recordings(directory)] if directory else []
    from vault_store.core.message import build_message

    results = []
    work = Path(tempfile.mkdtemp())
    for shape in [*names, "tiny objects", "long string", "deep nesting"]:
        path = work / "message.msgpack"
        body = body_of(shape)
        path.write_bytes(build_message(project_id=1, replay_id="ab" * 16, segment_id=0, body=body))
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(path)], capture_output=True, check=True
        )
        result = json.loads(done.stdout) | {"shape": shape}
        result["factor"] = round(result["peak_growth"] / result["decompressed"], 2)
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['shape']:28} {r['decompressed']:>12,} B  peak +{r['peak_growth']:>12,} B  "
            f"x{r['factor']}"
        )
    worst = max(results, key=lambda r: r["factor"])
    print(f"worst: {worst['shape']} x{worst['factor']}")


if __name__ == "__main__":
    main()
