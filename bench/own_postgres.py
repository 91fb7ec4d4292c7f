"""A PostgreSQL server of one's own on loopback, to kill and start again (a crash, a failover), for the
chaos case and the lost-ledger test; Debian's postgresql package provides the binaries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class NoPostgres(RuntimeError):
    """PostgreSQL's binaries are not installed."""


class OwnPostgres:
    """``initdb`` in a temporary folder, a free port; :meth:`kill` drops every connection at once."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            raise NoPostgres("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
        self.bin = bins[-1]
        self.root = Path(tempfile.mkdtemp(prefix="juspay-own-pg-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run it as postgres
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-w", "-o", options, "start")

    def kill(self) -> None:
        """As a crash or a failover does: every connection dropped at once, nothing shut down cleanly."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        stop = [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
