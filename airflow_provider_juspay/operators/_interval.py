"""The empty data interval trap: a plain cron schedule in Airflow 3 gives start == end, so a source
templated on the interval reads nothing, night after night, and the run is green."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["empty_interval_problem", "mentions_interval"]

#: A window that starts at the interval's start is empty when the interval is (a template on
#: ``data_interval_end`` alone, e.g. "the 7 days before it", is a window of its own and passes).
_INTERVAL = re.compile(r"\bdata_interval_start\b")


def mentions_interval(value: Any, jinja_env: Any, template_ext: Sequence[str]) -> bool:
    """Whether a template field (text, a ``.sql`` file, or a list/dict of them) starts at the interval."""
    if isinstance(value, str):
        if value.endswith(tuple(template_ext)):
            # Not a file after all: the text itself is the template.
            with contextlib.suppress(Exception):
                value = jinja_env.loader.get_source(jinja_env, value)[0]
        return bool(_INTERVAL.search(value))
    if isinstance(value, Mapping):
        return any(mentions_interval(v, jinja_env, template_ext) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(mentions_interval(v, jinja_env, template_ext) for v in value)
    return False


def empty_interval_problem(context: Mapping[str, Any], fields: Sequence[str]) -> str | None:
    """Why this run must not read its source: an empty data interval, and ``fields`` templated on it."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if not fields or start is None or end is None or start != end:
        return None
    return (
        f"this run's data interval is empty (data_interval_start == data_interval_end == {start}), "
        f"and {', '.join(fields)} is templated on data_interval_start, so it would read no rows and the "
        "run would pass having synced nothing. A plain cron schedule ('@daily', '0 2 * * *') is a "
        "CronTriggerTimetable in Airflow 3, with no interval. Fix: "
        "schedule=CronDataIntervalTimetable('@daily', timezone='UTC') (from airflow.timetables.interval), "
        "or a template that does not use the interval, e.g. {{ macros.ds_add(ds, -1) }} for the day "
        "before the run. Nothing was read or sent."
    )
