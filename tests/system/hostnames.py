"""Each Celery worker's name as its task instances' hostname (both workers share this machine's name)."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("JUSPAY_WORKER_NAME") or socket.getfqdn()
