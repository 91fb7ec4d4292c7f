"""Rows that hold anything at all: hypothesis strategies for Python values and a seeded generator for JSON.

About a third of the rows are valid (so that sending is exercised); the rest hold what real warehouses,
XComs and hand-written JSON hold: wrong types, lone surrogates, control characters, NUL bytes, NaN and
infinities, extreme dates, huge strings, nested containers, unknown and missing keys, hostile order ids.
"""

from __future__ import annotations

import random
import string
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from airflow_provider_juspay.fulfilment import KNOWN_COMMANDS, RECORD_FIELDS, FulfilmentRecord

HOSTILE_IDS = (
    "/", "?", "#", "%", "%2F", ".", "..", "...", " ", "a b", "a/b", "../x", "ünï✓", "\x00", "\x85",
    "\u2028", "\ud800", "X" * 128, "X" * 129, "", "  padded ", "-1", "0",
)  # fmt: skip
STATUSES = ("SUCCESS", "FAILURE", "success", " Failure ", "DELIVERED", "", "SUCCESS\x00")
COMMANDS = (*sorted(KNOWN_COMMANDS), "no_action", " invoice ", "SHIP", "", "NO_ACTION\r\n")
ZONES = [timezone(timedelta(hours=h)) for h in (-12, -5, 0, 5, 14)] + [timezone(timedelta(minutes=-1439))]

JUNK_COLUMNS = [*RECORD_FIELDS, "unknown_column"]


def is_valid(row: Any) -> bool:
    """Whether the record model takes the row: the rows a run must deliver."""
    try:
        FulfilmentRecord.from_mapping(row)
    except Exception:
        return False
    return True


def good_row(order_id: str, command: str) -> dict[str, str]:
    return {"order_id": order_id, "fulfillment_status": "SUCCESS", "fulfillment_command": command}


# -- hypothesis: any Python value a DB driver or a DAG author can hand over ---------------------------

_any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    _any_text,
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=st.sampled_from([None, *ZONES])),
    st.just("x" * 20_000),
)
_anything = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=12,
)
_by_field: dict[str, Any] = {
    "order_id": st.one_of(
        st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20),
        st.integers(min_value=0),
        st.sampled_from(HOSTILE_IDS),
        _anything,
    ),
    "fulfillment_status": st.one_of(st.sampled_from(STATUSES), _anything),
    "fulfillment_command": st.one_of(st.sampled_from(COMMANDS), _anything),
    "fulfillment_time": st.one_of(
        st.sampled_from(
            ["2026-11-26T18:30:00+05:30", "2026-11-26", "0999-01-01T00:00:00", "9999-12-31T23:59:59Z"]
        ),
        _anything,
    ),
}
row_values = st.fixed_dictionaries(
    {},
    optional={name: _by_field.get(name, _anything) for name in RECORD_FIELDS} | {"unknown_column": _anything},
)
#: A valid row, so that every batch sends something.
valid_rows = st.builds(
    lambda n, command: {
        "order_id": f"V-{n}",
        "fulfillment_status": "SUCCESS",
        "fulfillment_command": command,
    },
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(sorted(KNOWN_COMMANDS - {"PROTEST"})),
)
rows = st.lists(st.one_of(valid_rows, row_values, row_values, _anything), min_size=50, max_size=150)


# -- seeded: JSON-representable junk, for XCom, JSON text and warehouse columns -------------------------


def json_junk_rows(n: int, seed: int, *, xcom_safe: bool = False) -> list[Any]:
    """``n`` rows (mostly mappings) of JSON values, a third of them valid; deterministic for a seed.

    :param xcom_safe: leave out NaN, infinities and lone surrogates, which Python's JSON reads but
        Airflow's XCom refuses to store (so an upstream task could not return them).
    """
    rng = random.Random(seed)
    floats = [0.5, -1e308, 1e308] + ([] if xcom_safe else [float("nan"), float("inf")])
    surrogates = not xcom_safe

    def text() -> str:
        alphabet = [chr(rng.randrange(0, 0x110000)) for _ in range(8)] + list("abc ./%\x00\x85\ud800")
        drawn = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        return drawn if surrogates else drawn.encode("utf-8", "replace").decode("utf-8")

    def hostile() -> str:
        drawn = rng.choice(HOSTILE_IDS + STATUSES + COMMANDS)
        return drawn if surrogates else drawn.encode("utf-8", "replace").decode("utf-8")

    def value(depth: int = 0) -> Any:
        kind = rng.randrange(10 if depth < 2 else 7)
        return [
            lambda: None,
            lambda: rng.choice([True, False]),
            lambda: rng.randrange(-(10**20), 10**20),
            lambda: rng.choice(floats),
            text,
            hostile,
            lambda: rng.choice(["2026-11-26T18:30:00+05:30", "0001-01-01T00:00:00+01:00", "x" * 20_000]),
            lambda: [value(depth + 1) for _ in range(rng.randrange(3))],
            lambda: {text(): value(depth + 1) for _ in range(rng.randrange(3))},
            lambda: {"nested": [value(depth + 1)]},
        ][kind]()

    result: list[Any] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.33:
            command = rng.choice(sorted(KNOWN_COMMANDS - {"PROTEST"}))
            result.append(
                {"order_id": f"J{seed}-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": command}
            )
        elif roll < 0.95:
            fields = rng.sample(JUNK_COLUMNS, rng.randrange(1, 9))
            result.append({name: value() for name in fields})
        else:
            result.append(value())
    return result


def sql_junk_rows(n: int, seed: int, *, nul: bool = True) -> list[tuple]:
    """Rows for a warehouse table of RECORD_FIELDS + ``unknown_column`` (any SQL type), as tuples."""
    rng = random.Random(seed)
    columns = JUNK_COLUMNS
    rows = []
    for row in json_junk_rows(n, seed):
        if not isinstance(row, dict):
            row = {"order_id": row}
        values = []
        for name in columns:
            cell = row.get(name)
            if isinstance(cell, (list, dict)):
                cell = repr(cell)
            if isinstance(cell, str):
                cell = cell.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # drivers need UTF-8
                if not nul:
                    cell = cell.replace("\x00", "")
            if isinstance(cell, int) and not isinstance(cell, bool) and abs(cell) >= 2**63:
                cell = str(cell)
            if isinstance(cell, float) and cell != cell:
                cell = None
            values.append(cell)
        if rng.random() < 0.02:
            values[0] = date(2026, 11, 26).isoformat()  # an order id that looks like a date
        values.append(Decimal("1.5") if rng.random() < 0.01 else None)
        rows.append(tuple(values[: len(columns)]))
    return rows
