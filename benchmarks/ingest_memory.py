"""Peak memory of parsing and sealing one message, over its decompressed size, per shape.

Run:  python benchmarks/ingest_memory.py [--json]

Each message is parsed (validate + scan) and sealed into typed parts in a fresh subprocess; the
child reports its peak RSS growth (VmHWM after resetting it with /proc/self/clear_refs, minus
the RSS at the reset, after imports and after reading the message; max RSS where that is
refused) and the factor over the decompressed body. Shapes: every real recording in
../shared/data/recordings (one message per recording, whole), and adversarial ones of about
2 to 8 MB (ADVERSARIAL): many tiny objects, scalars or arrays (900,000 events, under
the 1,000,000-event cap), one long string, deep nesting (10,000 levels), a body of nothing but
nested brackets, events whose heads all differ, the densest usual events (read in one
pass: an object with a type and data each), a part change at every event, long numbers,
many keys in one object, and many events each nested past msgspec's depth limit.
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
ADVERSARIAL = [
    "tiny objects",
    "long string",
    "deep nesting",
    "nested brackets",
    "tiny scalars",
    "tiny arrays",
    "distinct heads",
    "tiny usual events",
    "alternating parts",
    "long numbers",
    "many keys",
    "deep arrays in events",
]
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
    if shape == "nested brackets":
        depth = ADVERSARIAL_BYTES // 2
        return b"[" + b"[" * depth + b"]" * depth + b"," + CRUMB + b"]"
    if shape == "tiny scalars":
        return b"[" + b"0," * 900_000 + CRUMB + b"]"
    if shape == "tiny arrays":
        return b"[" + b"[]," * 900_000 + CRUMB + b"]"
    if shape == "distinct heads":
        return b"[" + b",".join(b'{"type":%d}' % n for n in range(900_000)) + b"," + CRUMB + b"]"
    if shape == "tiny usual events":
        # The one-pass scan keeps an object, a data span and an integer per event while it
        # classifies: these are its smallest events (integers past the cached small ones).
        events = b",".join(b'{"type":%d,"data":0}' % (300 + n) for n in range(900_000))
        return b"[" + events + b"," + CRUMB + b"]"
    if shape == "alternating parts":
        return b"[" + b'{"type":2},0,' * 450_000 + CRUMB + b"]"
    if shape == "long numbers":
        number = b"1" * 1000
        return b"[" + b",".join([number] * (ADVERSARIAL_BYTES // 1001)) + b"," + CRUMB + b"]"
    if shape == "many keys":
        keys = b",".join(b'"k%d":0' % n for n in range(ADVERSARIAL_BYTES // 12))
        return b'[{"type":3,"data":{' + keys + b"}}," + CRUMB + b"]"
    if shape == "deep arrays in events":
        # Each event nests past msgspec's limit: the whole body goes through the deep scanner
        # (slow, so a quarter of the size).
        event = b'{"type":3,"data":' + b"[" * 1500 + b"]" * 1500 + b"}"
        count = ADVERSARIAL_BYTES // 4 // len(event)
        return b"[" + b",".join([event] * count) + b"," + CRUMB + b"]"
    from vault_store.services.samples import find_recordings_dir, load_recordings

    directory = find_recordings_dir()
    assert directory is not None, "the real recordings were not found"
    (recording,) = [r for r in load_recordings(directory) if r.name == shape]
    return orjson.dumps(recording.events)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS (bytes), where the kernel allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return _status("VmRSS")


def _peak() -> int:
    """Peak RSS (bytes) since the last reset."""
    try:
        return _status("VmHWM")
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
        # The high-water mark is reset here (Linux: clear_refs 5), so what imports and the
        # migrations peaked at cannot hide a message's cost below it.
        baseline = _reset_peak()
        segment = parse_message(raw)
        size = len(segment.body)
        vault.ingest_segment(segment)
        vault.flush()
        peak = _peak()
        vault.close()
    growth = max(peak - baseline, 0)
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
    for shape in [*names, *ADVERSARIAL]:
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
