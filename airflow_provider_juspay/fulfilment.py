"""Fulfilment records, their validation and wire form, and the outcome of sending one."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_juspay.errors import RecordError

__all__ = [
    "COMMAND_NAME",
    "DEFAULT_TIMEZONE",
    "KNOWN_COMMANDS",
    "MAX_DATA_CHARS",
    "MAX_ID_CHARS",
    "MAX_ORDER_ID_CHARS",
    "ORDER_FIELDS",
    "PASS_THROUGH_FIELDS",
    "RECORD_FIELDS",
    "FulfilmentCommand",
    "FulfilmentRecord",
    "FulfilmentResult",
    "FulfilmentStatus",
    "Item",
    "Outcome",
    "printable",
]

#: Zone that aware fulfilment times are converted to before they are sent without a zone.
#: Juspay's only example is a naive time; UTC is the one zone that needs no agreement.
DEFAULT_TIMEZONE = "UTC"

#: Longest ``fulfillment_data`` (and pass-through field) sent; Juspay publishes no limit, this guards
#: against runaway columns.
MAX_DATA_CHARS = 10_000
#: Longest order id: Juspay's Orders API asks for fewer than 21 characters; this leaves room for other
#: schemes while keeping the URL path and the ledger's key bounded.
MAX_ORDER_ID_CHARS = 128
#: Longest fulfilment id and routing id (the ledger's key column holds 255).
MAX_ID_CHARS = 255
#: Longest command name (the ledger's column holds 64).
MAX_COMMAND_CHARS = 64
#: Years a ``fulfillment_time`` may have after conversion: the wire format has four digits.
MIN_YEAR, MAX_YEAR = 1000, 9999

#: Characters no identifier may hold: C0 and C1 controls, DEL, line and paragraph separators, and lone
#: surrogates (which no UTF-8 text can carry).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A header value we send: printable ASCII only.
_HEADER_TEXT = re.compile("[\x20-\x7e]+")
#: A command's name: what ``extra_commands`` may enable.
COMMAND_NAME = re.compile(f"[A-Z][A-Z0-9_]{{0,{MAX_COMMAND_CHARS - 1}}}")

#: Wire format of ``fulfillment_time``: ISO-8601, seconds, no zone, as in Juspay's example.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class FulfilmentStatus(str, Enum):
    """What happened to the order."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class FulfilmentCommand(str, Enum):
    """The commands Juspay documents; the list is open-ended, see ``extra_commands``."""

    PROTEST = "PROTEST"
    INITIATE_CREDIT = "INITIATE_CREDIT"
    INITIATE_REFUND = "INITIATE_REFUND"
    BLOCK_IMEI = "BLOCK_IMEI"
    UNBLOCK_IMEI = "UNBLOCK_IMEI"
    POST_TXN_SPLIT_SETTLEMENT = "POST_TXN_SPLIT_SETTLEMENT"
    NO_ACTION = "NO_ACTION"
    INVOICE = "INVOICE"


KNOWN_COMMANDS: frozenset[str] = frozenset(c.value for c in FulfilmentCommand)

#: Command-specific fields sent as they are (JSON text when given a mapping or list).
PASS_THROUGH_FIELDS: tuple[str, ...] = ("split_settlement_details", "product_details")

#: The fields every fulfilment has (the single-order operator takes each as an argument).
ORDER_FIELDS: tuple[str, ...] = (
    "order_id",
    "fulfillment_status",
    "fulfillment_command",
    "fulfillment_time",
    "fulfillment_id",
    "fulfillment_data",
    "routing_id",
)
#: Every field a source row may carry (input keys and warehouse column names).
RECORD_FIELDS: tuple[str, ...] = (*ORDER_FIELDS, *PASS_THROUGH_FIELDS)
#: Fields sent as free text (text as it is; a mapping or list as compact JSON), up to MAX_DATA_CHARS.
FREE_TEXT_FIELDS: tuple[str, ...] = ("fulfillment_data", *PASS_THROUGH_FIELDS)


class Outcome(str, Enum):
    """The one outcome every input record ends in."""

    SENT = "sent"
    ALREADY_FULFILLED = "already_fulfilled"
    REJECTED = "rejected"
    FAILED = "failed"
    INVALID = "invalid"
    SKIPPED = "skipped"
    NOT_ATTEMPTED = "not_attempted"
    #: Another live attempt holds the key in the ledger (an overlapping run, or an earlier row of
    #: this one): that attempt delivers it, so this row is neither sent nor a failure.
    HELD_ELSEWHERE = "held_elsewhere"

    @property
    def is_failure(self) -> bool:
        """Juspay does not hold the fulfilment: refused, failed, invalid or not sent. A run's report
        judges it (``sync.report.counts_as_failure``: a dry run's not_attempted rows are not failures)."""
        return self in _FAILURES

    @property
    def is_delivered(self) -> bool:
        """True when Juspay holds the fulfilment (now or from before)."""
        return self in (Outcome.SENT, Outcome.ALREADY_FULFILLED)


_FAILURES = frozenset({Outcome.REJECTED, Outcome.FAILED, Outcome.INVALID, Outcome.NOT_ATTEMPTED})


@dataclass(frozen=True)
class FulfilmentResult:
    """What became of one record: its outcome and, where Juspay answered, its status and code."""

    order_id: str | None
    outcome: Outcome
    http_status: int | None = None
    error_code: str | None = None
    message: str | None = None
    attempts: int = 0
    command: str | None = None
    fulfillment_id: str | None = None
    #: Where the row was read: ``orders.csv line 17``, ``row 5`` (None when not known).
    position: str | None = None

    def __post_init__(self) -> None:
        # An ErrorCode is kept as its text: XCom, reports and the ledger hold plain strings.
        if self.error_code is not None and type(self.error_code) is not str:
            object.__setattr__(self, "error_code", str(self.error_code))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for XCom and reports."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data


@dataclass(frozen=True)
class FulfilmentRecord:
    """One validated fulfilment, ready to send; build it with :meth:`from_mapping`."""

    order_id: str
    fulfillment_status: FulfilmentStatus
    fulfillment_command: str
    fulfillment_time: str | None = None
    fulfillment_id: str | None = None
    fulfillment_data: str | None = None
    routing_id: str | None = None
    #: Pass-through fields as ``(name, text)`` pairs, in :data:`PASS_THROUGH_FIELDS` order.
    extras: tuple[tuple[str, str], ...] = field(default=())
    #: Where the row was read (``orders.csv line 17``); never sent, not part of the record's identity.
    position: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        column_map: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        *,
        extra_commands: Iterable[str] = (),
        timezone: str = DEFAULT_TIMEZONE,
    ) -> FulfilmentRecord:
        """Validate and normalise one source row.

        :param mapping: the row; keys are record fields, or source names mapped by ``column_map``.
            Keys that name no field are ignored (the bulk operator logs them once).
        :param column_map: ``{"source_column": "field"}`` renames.
        :param defaults: values for fields the row lacks or holds as null.
        :param extra_commands: commands enabled for this merchant beyond ``KNOWN_COMMANDS``.
        :param timezone: IANA zone that aware ``fulfillment_time`` values are converted to.
        :raises RecordError: naming the order id, field, value and rule broken.
        """
        values = _gather(mapping, column_map or {}, defaults or {})
        try:
            return cls._from_values(values, extra_commands, timezone)
        except RecordError as exc:
            # The row's own words, for people to find it: its id as given and the ids of the shipment.
            if exc.order_id is None and values.get("order_id") is not None:
                exc.order_id = _shown_id(values["order_id"])
            exc.fields = {
                name: _shown_id(values[name])
                for name in ("fulfillment_command", "fulfillment_id", "fulfillment_status", "routing_id")
                if values.get(name) is not None
            }
            raise

    @classmethod
    def _from_values(
        cls, values: dict[str, Any], extra_commands: Iterable[str], timezone: str
    ) -> FulfilmentRecord:
        order_id = _order_id(values.get("order_id"))
        # Enabled commands are checked as record commands are: a name, not any text.
        extra = {_enum_text(c) for c in extra_commands}

        def check(name: str, value: object, rule: str) -> RecordError:
            return RecordError(order_id, name, value, rule)

        status_raw = values.get("fulfillment_status")
        status_text = _enum_text(status_raw)
        if status_text is None:
            raise check("fulfillment_status", status_raw, "is required (SUCCESS or FAILURE)")
        try:
            status = FulfilmentStatus(status_text)
        except ValueError:
            raise check("fulfillment_status", status_raw, "must be SUCCESS or FAILURE") from None

        command_raw = values.get("fulfillment_command")
        command = _enum_text(command_raw)
        if command is None:
            raise check("fulfillment_command", command_raw, "is required (text)")
        allowed = KNOWN_COMMANDS | {c for c in extra if c and COMMAND_NAME.fullmatch(c)}
        if command not in allowed:
            raise check(
                "fulfillment_command",
                command_raw,
                f"must be one of {', '.join(sorted(allowed))} (enable others with extra_commands)",
            )
        if command == FulfilmentCommand.PROTEST and status is not FulfilmentStatus.FAILURE:
            raise check("fulfillment_status", status_raw, "must be FAILURE for a PROTEST command")

        when = values.get("fulfillment_time")
        try:
            fulfillment_time = _format_time(when, timezone)
        except (TypeError, ValueError, OverflowError) as exc:
            raise check("fulfillment_time", when, str(exc)) from None

        free_text = {name: _free_text(values.get(name), check, name) for name in FREE_TEXT_FIELDS}
        extras = tuple((name, text) for name in PASS_THROUGH_FIELDS if (text := free_text[name]) is not None)
        return cls(
            order_id=order_id,
            fulfillment_status=status,
            fulfillment_command=command,
            fulfillment_time=fulfillment_time,
            fulfillment_id=_fulfillment_id(values.get("fulfillment_id"), check),
            fulfillment_data=free_text["fulfillment_data"],
            routing_id=_routing_id(values.get("routing_id"), check),
            extras=extras,
        )

    def to_form(self) -> dict[str, str]:
        """The form fields Juspay's Fulfillment Sync API takes (routing id travels as a header)."""
        form = {
            "fulfillment_status": self.fulfillment_status.value,
            "fulfillment_command": self.fulfillment_command,
        }
        if self.fulfillment_time is not None:
            form["fulfillment_time"] = self.fulfillment_time
        if self.fulfillment_id is not None:
            form["fulfillment_id"] = self.fulfillment_id
        if self.fulfillment_data is not None:
            form["fulfillment_data"] = self.fulfillment_data
        form.update(self.extras)
        return form


def _gather(
    mapping: Mapping[str, Any], column_map: Mapping[str, str], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Rename columns, drop unknown ones, and fill missing or null fields from defaults."""
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        name = column_map.get(key, key)
        if name in RECORD_FIELDS and not _is_null(value):
            values[name] = value
    for name, value in defaults.items():
        if name not in RECORD_FIELDS:
            raise RecordError(values.get("order_id"), name, value, "is not a record field (defaults)")
        values.setdefault(name, value)
    return values


def _is_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\x00``, ``\\ud800``): safe to log."""
    return _CONTROL.sub(
        lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text
    )


def _shown_id(value: object) -> str:
    """A value as text that is safe to log and bounded (an invalid row's id, as given)."""
    try:
        return printable(str(value))[:MAX_ID_CHARS]
    except Exception:
        return f"<{type(value).__name__}>"


def _whole_number(value: object, name: str, check: Any) -> object:
    """A warehouse's whole-number ``Decimal`` (NUMERIC, NUMBER, DECIMAL) as an int; other numbers refused.

    An id must be exact: a float, or a Decimal with a fraction, is refused with the cast that fixes it.
    """
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        rule = "is not a whole number, so not an id"
    elif isinstance(value, float):
        rule = "is a float, which cannot hold every id exactly"
    else:
        return value
    raise check(
        name,
        value,
        f"{rule}: cast the column to a whole number in the query, CAST({name} AS BIGINT) "
        f"(to text only from there, CAST(CAST({name} AS BIGINT) AS VARCHAR): a float cast straight to "
        "text keeps its '.0')",
    )


#: A number's text as a float prints it ('9000000000000.0', '9e+12', '1.0e+20'): an id that went through
#: a float. The exponent's sign and one-digit mantissa are how floats print: a hex id ('4e1023') passes.
_FLOAT_TEXT = re.compile(r"^[0-9]+\.0+$|^[0-9](\.[0-9]+)?[eE][+-][0-9]+$")


def _order_id(value: object) -> str:
    """One safe URL path segment, exactly as given: never trimmed or otherwise changed."""
    if value is None:
        raise RecordError(None, "order_id", value, "is required")
    value = _whole_number(value, "order_id", partial(RecordError, None))
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(None, "order_id", value, f"must be text or an integer, not {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise RecordError(None, "order_id", value, "must not be empty")
    if _FLOAT_TEXT.match(text):
        raise RecordError(
            None, "order_id", value,
            "is a float's text (a float column cast to text keeps '.0' or an exponent), not the order's "
            "id: cast to a whole number first, CAST(order_id AS BIGINT)",
        )  # fmt: skip
    if _CONTROL.search(text):
        raise RecordError(None, "order_id", value, "must not contain control characters or lone surrogates")
    if text != text.strip():
        raise RecordError(None, "order_id", value, "must not start or end with spaces (it is never trimmed)")
    if text in (".", ".."):
        raise RecordError(None, "order_id", value, "must not be '.' or '..' (a path step, not an id)")
    if len(text) > MAX_ORDER_ID_CHARS:
        raise RecordError(None, "order_id", value, f"is {len(text)} characters, over {MAX_ORDER_ID_CHARS}")
    return text


def _enum_text(value: object) -> str | None:
    """Case and surrounding spaces of enum values are normalised, not rejected; only text is read."""
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str):
        return None
    return value.strip().upper() or None


def _fulfillment_id(value: object, check: Any) -> str | None:
    """Free of control characters, at most MAX_ID_CHARS; surrounding spaces are trimmed (documented)."""
    if value is None:
        return None
    value = _whole_number(value, "fulfillment_id", check)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise check("fulfillment_id", value, f"must be text or an integer, not {type(value).__name__}")
    text = str(value).strip()
    if _CONTROL.search(text):
        raise check("fulfillment_id", value, "must not contain control characters or lone surrogates")
    if len(text) > MAX_ID_CHARS:
        raise check("fulfillment_id", value, f"is {len(text)} characters, over {MAX_ID_CHARS}")
    return text or None


def _routing_id(value: object, check: Any) -> str | None:
    """A header value: printable ASCII, at most MAX_ID_CHARS; surrounding spaces are trimmed."""
    if value is None:
        return None
    value = _whole_number(value, "routing_id", check)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise check("routing_id", value, f"must be text or an integer, not {type(value).__name__}")
    text = str(value).strip()
    if not text:
        return None
    if not _HEADER_TEXT.fullmatch(text):
        raise check("routing_id", value, "must be printable ASCII (it travels as the x-routing-id header)")
    if len(text) > MAX_ID_CHARS:
        raise check("routing_id", value, f"is {len(text)} characters, over {MAX_ID_CHARS}")
    return text


def _free_text(value: object, check: Any, name: str) -> str | None:
    """Text as it is (bytes as UTF-8); a mapping or list as compact JSON; at most MAX_DATA_CHARS."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes):
            text = value.decode("utf-8")
        elif isinstance(value, (Mapping, list, tuple)):
            text = json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
            )
        elif (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()
        ):
            raise ValueError("NaN and infinities are not text")
        else:
            text = str(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise check(name, value, f"cannot be sent as text or JSON ({type(exc).__name__}: {exc})") from None
    if _SURROGATE.search(text):
        raise check(name, value, "must not contain lone surrogates (they cannot be sent as UTF-8)")
    if len(text) > MAX_DATA_CHARS:
        raise check(name, value, f"is {len(text)} characters, over {MAX_DATA_CHARS}")
    return text


def _json_default(value: object) -> str:
    """What JSON has no type for: bytes as UTF-8 text, dates in ISO form, anything else as its text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("NaN and infinities are not JSON")
    return str(value)


def _format_time(value: object, timezone: str) -> str | None:
    """Render a time as ``YYYY-MM-DDTHH:MM:SS``; aware times are first converted to ``timezone``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_iso(value.strip())
    elif isinstance(value, bool):
        raise TypeError("must be a datetime, a date or an ISO-8601 string, not bool")
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise TypeError(f"must be a datetime, a date or an ISO-8601 string, not {type(value).__name__}")
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(_zone(timezone))
        except OverflowError:
            raise ValueError(f"is out of range once converted to {timezone}") from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be {MIN_YEAR}-{MAX_YEAR} (the wire format has four digits)")
    return value.strftime(TIME_FORMAT)


def _parse_iso(text: str) -> datetime:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not an ISO-8601 date or date-time (e.g. 2024-07-08T16:30:33)") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not a known IANA zone") from None


#: What flows through the pipeline: a record to send, or a result already final (invalid, skipped).
Item = FulfilmentRecord | FulfilmentResult
