"""Files through Airflow's ObjectStoragePath: the files a push reads, and the file its failures go to.

Any scheme Airflow knows (``file://``, ``s3://conn_id@bucket/...``, ``gs://...``, every fsspec scheme a
provider registers) works the same way; credentials come from the connection in the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_juspay.sync.export import FailureExport, export_format

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = ["failure_export", "files_to_read", "storage_path"]

_GLOB = frozenset("*?[")


def storage_path(url: str) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` of a URL; a plain path is a local file (``file://``)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url if "://" in url else f"file://{url}")


def files_to_read(url: str) -> list[tuple[str, Callable[[], AbstractContextManager[IO[bytes]]]]]:
    """The files of ``url`` in reading order: one file, a folder's files, or a glob's matches.

    A folder's names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc``: markers of the job that wrote
    them) are passed over. Sorted by name, so a rerun reads the same rows in the same order.
    """
    if any(c in _GLOB for c in url):
        base, pattern = _split_glob(url)
        root = storage_path(base)
        found = sorted((p for p in root.glob(pattern) if p.is_file()), key=str)
        if not found:
            raise AirflowException(f"no file matches {url!r}: check the path and the run's date in it")
    else:
        path = storage_path(url)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))), key=str
            )
            if not found:
                raise AirflowException(f"the folder {url!r} holds no file to read")
        elif path.is_file():
            found = [path]
        else:
            raise AirflowException(f"no such file or folder: {url!r}")
    return [(str(p), _opener(p)) for p in found]


@contextmanager
def failure_export(url: str, *, dry_run: bool, log: Any) -> Iterator[FailureExport]:
    """The failure file at ``url`` (format from its suffix), closed complete however the run ends.

    Opened before anything is sent: a target that cannot be written fails the task with nothing lost.
    A local folder is created; object stores need none. A run without failures leaves no file (an
    earlier run's file at the same path goes too: the path tells this run's failures), and says so.
    """
    file_format = export_format(url)
    target = storage_path(url)
    try:
        if target.protocol in ("file", "local", ""):
            target.parent.mkdir(parents=True, exist_ok=True)
        opened = target.open("w", encoding="utf-8", errors="backslashreplace", newline="")
    except Exception as exc:
        raise AirflowException(f"failures_path {url!r} cannot be written: {exc}") from exc
    with opened as stream:
        export = FailureExport(stream, file_format, dry_run=dry_run)
        try:
            yield export
        finally:
            if export.rows:
                log.info("%d failures written to %s", export.rows, url)
    if not export.rows:
        try:
            target.unlink()
        except Exception as exc:  # the run's outcome stands; an empty file is all that is left
            log.warning("no failures; the empty %s could not be removed: %s", url, exc)
        else:
            log.info("No failures: nothing written to %s (no file)", url)


def _opener(path: ObjectStoragePath) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


def _split_glob(url: str) -> tuple[str, str]:
    """``s3://b/day=1/*.csv`` -> (``s3://b/day=1``, ``*.csv``): the part before the first glob segment."""
    scheme, sep, rest = url.rpartition("://")
    prefix = f"{scheme}{sep}" if sep else ""
    parts = rest.split("/")
    first = next(i for i, part in enumerate(parts) if any(c in _GLOB for c in part))
    if first == 0 or (prefix and first == 1 and not parts[0]):
        raise AirflowException(f"{url!r}: a glob needs a folder before its first wildcard")
    return prefix + "/".join(parts[:first]), "/".join(parts[first:])
