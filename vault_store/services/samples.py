"""Sample recordings for the demo and benchmarks: the real ones in shared/, or synthetic ones."""

from __future__ import annotations

import gzip
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vault_store.core.message import build_message
from vault_store.core.rrweb import Event, load_events, segment_bodies

# Recordings of full sessions with timestamps; the others in shared/ are test fragments.
SESSION_FILES = (
    "rrweb/rrweb-player-demo-events.json",
    "posthog-react-rrweb-player/homepage.json",
    "posthog-react-rrweb-player/docs.json.gz",
    "posthog-react-rrweb-player/mobile-homepage.json.gz",
    "posthog-react-rrweb-player/wide-layout.json.gz",
    "posthog-react-rrweb-player/with-pageviews.json.gz",
    "posthog-react-rrweb-player/local-docs.json.gz",
)
_RELATIVE = Path("shared/data/recordings")


@dataclass(frozen=True, slots=True)
class Recording:
    """A named list of rrweb events."""

    name: str
    events: list[Event]


@dataclass(frozen=True, slots=True)
class SampleReplay:
    """A recording sent as one replay: its ids and the segment bodies its messages carry."""

    recording: Recording
    project_id: int
    replay_id: str
    bodies: list[bytes]

    @property
    def events(self) -> list[Event]:
        """The original events, to compare a read against."""
        return self.recording.events


def as_replays(
    recordings: list[Recording], *, copies: int = 1, projects: int = 2
) -> list[SampleReplay]:
    """Each recording as `copies` replays with fresh ids, spread over `projects` projects."""
    return [
        SampleReplay(
            recording, 1 + n % projects, uuid.uuid4().hex, segment_bodies(recording.events)
        )
        for index, recording in enumerate(recordings)
        for n in range(index, index + copies)
    ]


def as_messages(
    replays: list[SampleReplay], *, seed: int = 0, duplicate_fraction: float = 0.0
) -> list[bytes]:
    """Every segment as a relay message, shuffled, a fraction sent twice: as a relay delivers.

    Bodies alternate between zlib and raw JSON, the two forms the relay uses.
    """
    generator = random.Random(seed)  # noqa: S311 (delivery order, not secrets)
    messages = [
        build_message(
            project_id=replay.project_id,
            replay_id=replay.replay_id,
            segment_id=segment_id,
            body=body,
            compress=segment_id % 2 == 0,
        )
        for replay in replays
        for segment_id, body in enumerate(replay.bodies)
    ]
    messages += generator.sample(messages, int(len(messages) * duplicate_fraction))
    generator.shuffle(messages)
    return messages


def find_recordings_dir(explicit: Path | None = None) -> Path | None:
    """`explicit`, else the nearest ``shared/data/recordings`` above the cwd or this package."""
    if explicit is not None:
        return explicit if explicit.is_dir() else None
    for base in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (base, *base.parents):
            candidate = folder / _RELATIVE
            if candidate.is_dir():
                return candidate
    return None


def load_recordings(directory: Path) -> list[Recording]:
    """The real session recordings present in `directory`."""
    recordings = []
    for relative in SESSION_FILES:
        path = directory / relative
        if path.is_file():
            raw = path.read_bytes()
            data = gzip.decompress(raw) if path.suffix == ".gz" else raw
            recordings.append(
                Recording(path.name.split(".")[0], load_events(data, source=str(path)))
            )
    return recordings


def synthetic_recordings(count: int = 4, *, seed: int = 7) -> list[Recording]:
    """Realistic rrweb sessions (page loads, snapshots, mouse, scroll, input, mutations)."""
    generator = random.Random(seed)  # noqa: S311 (synthetic data, not secrets)
    return [Recording(f"synthetic-{n}", list(_synthetic_session(generator))) for n in range(count)]


def _synthetic_session(generator: random.Random) -> Iterator[Event]:
    clock = 1_700_000_000_000 + generator.randrange(10**9)
    for page in range(generator.randint(1, 3)):
        yield {
            "type": 4,
            "data": {"href": f"https://shop.example/page/{page}", "width": 1280, "height": 800},
            "timestamp": clock,
        }
        yield {
            "type": 2,
            "data": {"node": _dom(generator, depth=4), "initialOffset": {"top": 0, "left": 0}},
            "timestamp": clock + 5,
        }
        for _ in range(generator.randint(80, 300)):
            clock += generator.choice((16, 50, 120, 400, 1500, 9000))
            source = generator.choice((1, 1, 1, 3, 5, 0, 2))
            data: dict[str, object] = {"source": source}
            if source == 1:
                data["positions"] = [
                    {
                        "x": generator.randrange(1280),
                        "y": generator.randrange(800),
                        "id": generator.randrange(400),
                        "timeOffset": -k * 16,
                    }
                    for k in range(generator.randint(1, 12))
                ]
            elif source == 0:
                data |= {
                    "texts": [],
                    "attributes": [],
                    "removes": [],
                    "adds": [
                        {
                            "parentId": generator.randrange(400),
                            "nextId": None,
                            "node": _dom(generator, depth=2),
                        }
                    ],
                }
            else:
                data |= {
                    "id": generator.randrange(400),
                    "x": 0,
                    "y": generator.randrange(4000),
                    "text": "hello" * generator.randint(0, 3),
                    "isChecked": False,
                }
            yield {"type": 3, "data": data, "timestamp": clock}


def _dom(generator: random.Random, *, depth: int) -> dict[str, object]:
    tag = generator.choice(("div", "section", "span", "a", "li", "p", "button"))
    node: dict[str, object] = {
        "type": 2,
        "tagName": tag,
        "attributes": {"class": f"c{generator.randrange(50)} flex p-{generator.randrange(6)}"},
        "id": generator.randrange(10**6),
        "childNodes": [],
    }
    if depth > 0:
        node["childNodes"] = [
            _dom(generator, depth=depth - 1) for _ in range(generator.randint(1, 4))
        ]
    else:
        node["childNodes"] = [
            {
                "type": 3,
                "textContent": "Lorem ipsum " * generator.randint(1, 8),
                "id": generator.randrange(10**6),
            }
        ]
    return node


def recordings_or_synthetic(explicit: Path | None = None) -> tuple[list[Recording], str]:
    """Real recordings when they can be found, else synthetic ones; and where they came from."""
    directory = find_recordings_dir(explicit)
    if directory is not None:
        found = load_recordings(directory)
        if found:
            return found, str(directory)
    return synthetic_recordings(), "synthetic (no shared/data/recordings found)"
