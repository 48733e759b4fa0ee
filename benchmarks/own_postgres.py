"""A PostgreSQL server of the benchmark's own: a fresh cluster on a free port, with its settings.

Run:  python benchmarks/own_postgres.py [--stock] [--set NAME=VALUE ...] -- COMMAND [ARG ...]

It makes a cluster in a new directory (`initdb`, as the `postgres` user when run as root),
starts it on 127.0.0.1 on a free port, runs COMMAND, then stops the server and removes the
directory (`--keep-dir` keeps it). COMMAND gets the server's URL in `VAULT_STORE_BENCH_PG` and
as every `{url}` in its arguments, and the cluster's directory in `VAULT_STORE_BENCH_PG_DATA`:
benchmarks that empty PostgreSQL's buffers between measurements (catalog_scale.py) restart only
a server named there, never the machine's own, which other work shares.

Settings: by default the ones a deployment on this machine would use, sized from its memory
(shared_buffers a quarter of it, effective_cache_size a half, max_wal_size 8GB and
checkpoint_timeout 15min, so checkpoints come from time rather than from WAL volume);
`--stock` keeps initdb's (shared_buffers 128MB, as the machine's server has). `--set` adds or
overrides any one. Durability is never changed: fsync, synchronous_commit and
full_page_writes keep their defaults, because the catalog's guarantees rest on them.

Example (the 50M-row catalog on a sized server):

    python benchmarks/own_postgres.py -- python benchmarks/catalog_scale.py --pg {url} --json
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

URL_ENV = "VAULT_STORE_BENCH_PG"
DATA_ENV = "VAULT_STORE_BENCH_PG_DATA"
SERVER_USER = "postgres"


def sized_settings() -> dict[str, str]:
    """Memory and checkpoint settings for a dedicated server on this machine."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)  # MiB
    return {
        "shared_buffers": f"{pages // 4}MB",
        "effective_cache_size": f"{pages // 2}MB",
        "maintenance_work_mem": "1GB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "15min",
    }


def binaries() -> Path:
    """The directory of the newest installed server's programs (initdb, pg_ctl)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    if not installed:
        raise SystemExit("own_postgres: no PostgreSQL server programs (pg_ctl) found")
    return Path(installed[-1]).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """One cluster in `directory` (its data in `data`, its log beside), its programs run as the
    server user when we are root."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._bin = binaries()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if os.geteuid() == 0:  # initdb refuses root; the server then runs as its own user
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"own_postgres: {program} failed: {done.stderr.strip()[-2000:]}")

    def create(self, port: int, settings: dict[str, str]) -> None:
        if os.geteuid() == 0:
            server = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, server.pw_uid, server.pw_gid)
        data = self.directory / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.directory}'",
            **{name: f"'{value}'" for name, value in settings.items()},
        }
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# benchmarks/own_postgres.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in lines.items())

    def start(self) -> None:
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stop and start again: shared buffers emptied, settings and data kept."""
        self.stop()
        self.start()


def restart_own_server() -> bool:
    """Restart the server own_postgres.py started for this process, if any; True if done."""
    directory = os.environ.get(DATA_ENV)
    if not directory:
        return False
    Cluster(Path(directory)).restart()
    return True


@contextmanager
def own_postgres(
    settings: dict[str, str], *, parent: str | None = None, keep_dir: bool = False
) -> Iterator[tuple[str, Cluster]]:
    """A started server of our own, its URL; stopped (its directory removed) afterwards."""
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="vault-store-pg-", dir=parent)))
    port = free_port()
    try:
        cluster.create(port, settings)
        cluster.start()
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres", cluster
        finally:
            cluster.stop()
    finally:
        if not keep_dir:
            shutil.rmtree(cluster.directory)


def parse_settings(pairs: Sequence[str], *, stock: bool) -> dict[str, str]:
    settings = {} if stock else sized_settings()
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"own_postgres: --set wants NAME=VALUE, got {pair!r}")
        settings[name.strip()] = value.strip()
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="%(prog)s [--stock] [--set NAME=VALUE ...] [--dir DIR] [--keep-dir] -- COMMAND",
    )
    parser.add_argument("--stock", action="store_true", help="initdb's settings, none sized")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--dir", help="where the cluster's directory is made (default: $TMPDIR)")
    parser.add_argument("--keep-dir", action="store_true", help="keep the cluster's directory")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND to run (put it after --)")
    settings = parse_settings(args.set, stock=args.stock)
    with own_postgres(settings, parent=args.dir, keep_dir=args.keep_dir) as (url, cluster):
        print(f"own_postgres: {url} in {cluster.directory}", file=sys.stderr, flush=True)
        env = {**os.environ, URL_ENV: url, DATA_ENV: str(cluster.directory)}
        started = time.monotonic()
        done = subprocess.run([a.replace("{url}", url) for a in command], env=env, check=False)
        print(
            f"own_postgres: command exited {done.returncode} after "
            f"{time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
