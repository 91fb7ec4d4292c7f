"""Record rules: one test per rule and per accepted input form."""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pendulum
import pytest

from airflow_provider_juspay.errors import RecordError
from airflow_provider_juspay.fulfilment import MAX_DATA_CHARS, FulfilmentRecord, FulfilmentResult, Outcome

GOOD = {"order_id": "ORD-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}


def make(**changes):
    return FulfilmentRecord.from_mapping({**GOOD, **changes})


def broken(expected_field: str, **changes) -> RecordError:
    with pytest.raises(RecordError) as info:
        make(**changes)
    assert info.value.field == expected_field
    return info.value


def test_minimal_record_goes_on_the_wire_as_form_fields():
    assert make().to_form() == {"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}


def test_record_is_immutable():
    record = make()
    with pytest.raises(AttributeError):
        record.order_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_order_id_is_required(value):
    err = broken("order_id", order_id=value)
    assert "order_id" in str(err)


def test_order_id_accepts_integers_and_is_never_trimmed():
    assert make(order_id=1234).order_id == "1234"
    assert "never trimmed" in broken("order_id", order_id="  ORD-9 ").rule


@pytest.mark.parametrize(
    "order_id, rule",
    [
        (".", "path step"),
        ("..", "path step"),
        ("ORD\x851", "control characters"),  # C1 control (NEL)
        ("ORD\u2028", "control characters"),
        ("ORD\ud800", "lone surrogates"),
        ("X" * 129, "over 128"),
        (b"ORD-1", "not bytes"),
        (1.5, "is a float, which cannot hold every id exactly: cast the column"),
        (True, "not bool"),
    ],
)
def test_order_id_rules(order_id, rule):
    assert rule in broken("order_id", order_id=order_id).rule


@pytest.mark.parametrize("field", ["order_id", "fulfillment_id", "routing_id"])
def test_whole_number_decimals_are_sent_as_integer_text(field):
    """PostgreSQL numeric, Oracle NUMBER and MySQL DECIMAL come back as Decimal."""
    for value, text in ((Decimal("12345"), "12345"), (Decimal("7.000"), "7"), (Decimal("1E+3"), "1000")):
        assert getattr(make(**{field: value}), field) == text


@pytest.mark.parametrize("field", ["order_id", "fulfillment_id", "routing_id"])
@pytest.mark.parametrize("value", [Decimal("12.5"), Decimal("NaN"), Decimal("Infinity"), 12.0, 3.25])
def test_fractional_decimals_and_floats_are_refused_with_the_cast(field, value):
    err = broken(field, **{field: value})
    assert err.field == field
    first_cast = err.rule.index("CAST(")
    assert err.rule[first_cast:].startswith(f"CAST({field} AS BIGINT)"), "the whole-number cast first"
    assert f"CAST({field} AS VARCHAR)" not in err.rule, "a float cast straight to text keeps its '.0'"


def test_the_suggested_casts_on_sqlite_give_an_id_a_text_cast_of_a_float_is_refused():
    """On SQLite a REAL cast to text is '9000000000000.0' (a wrong id, once sent green); the cast the
    hint names first gives the id."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE o (order_id REAL)")
    db.execute("INSERT INTO o VALUES (9000000000000)")
    (as_text,) = db.execute("SELECT CAST(order_id AS VARCHAR) FROM o").fetchone()
    assert as_text == "9000000000000.0"
    err = broken("order_id", order_id=as_text)
    assert "float's text" in err.rule and "CAST(order_id AS BIGINT)" in err.rule
    for hinted in ("CAST(order_id AS BIGINT)", "CAST(CAST(order_id AS BIGINT) AS VARCHAR)"):
        (value,) = db.execute(f"SELECT {hinted} FROM o").fetchone()
        assert make(order_id=value).order_id == "9000000000000"
    for floaty in ("12.0", "9e+12", "1.5E+3", "1.0e+20"):
        assert "float's text" in broken("order_id", order_id=floaty).rule
    for fine in ("ORD-12.0", "12.5", "0012", "1e3x", "4e1023", "12E45"):
        assert make(order_id=fine).order_id == fine


def test_an_invalid_order_id_is_named_as_given_never_missing():
    err = broken("order_id", order_id="ORD\x001")
    assert err.order_id == "ORD\\x001" and "<missing>" not in str(err)
    err = broken("order_id", order_id=Decimal("1.5"), fulfillment_id="AWB-9")
    assert err.order_id == "1.5" and str(err).startswith("order_id=Decimal('1.5'): is not a whole number")
    assert err.fields["fulfillment_id"] == "AWB-9" and err.fields["fulfillment_command"]
    assert "<missing>" not in str(broken("order_id", order_id=None))


def test_order_id_at_the_length_limit_and_hostile_but_legal_ids_pass():
    for order_id in ("X" * 128, "a/b?c#d%e", "%2F", "...", " x".strip(), "ünïcødé ✓ id", "a b"):
        assert make(order_id=order_id).order_id == order_id


@pytest.mark.parametrize(
    "field, value, rule",
    [
        ("routing_id", "cust\r\nX-Evil: 1", "printable ASCII"),
        ("routing_id", "kündin", "printable ASCII"),
        ("routing_id", "c" * 256, "over 255"),
        ("fulfillment_id", "F\x00", "control characters"),
        ("fulfillment_id", "F" * 256, "over 255"),
        ("fulfillment_data", "note \udc80", "lone surrogates"),
        ("fulfillment_data", float("inf"), "NaN and infinities"),
        ("fulfillment_data", Decimal("NaN"), "NaN and infinities"),
        ("fulfillment_data", {"weight": float("inf")}, "cannot be sent"),
        ("fulfillment_data", b"\xff\xfe", "cannot be sent"),
        ("product_details", [[[]] * 2] * 6000, "over 10000"),
        ("fulfillment_time", "0999-05-01T10:00:00", "year must be 1000-9999"),
        ("fulfillment_time", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), "out of range"),
        ("fulfillment_time", datetime(999, 5, 1), "year must be 1000-9999"),
        (
            "fulfillment_time",
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
            "out of range",
        ),
        ("fulfillment_time", 1732600000, "not int"),
        ("fulfillment_status", b"SUCCESS", "is required"),
    ],
)
def test_field_rules(field, value, rule):
    assert rule in broken(field, **{field: value}).rule


def test_bytes_and_decimals_in_free_text_are_sent_as_text():
    record = make(fulfillment_data=b"note", product_details=[{"price": Decimal("9.50"), "sku": b"S1"}])
    assert record.fulfillment_data == "note"
    assert dict(record.extras)["product_details"] == '[{"price":"9.50","sku":"S1"}]'


def test_order_id_rejects_control_characters():
    err = broken("order_id", order_id="ORD\n1")
    assert "control characters" in err.rule


def test_order_id_keeps_path_and_unicode_characters():
    assert make(order_id="a/b c?#%é").order_id == "a/b c?#%é"


@pytest.mark.parametrize("value", ["success", " Success ", "SUCCESS"])
def test_status_case_and_spaces_are_normalised(value):
    assert make(fulfillment_status=value).fulfillment_status.value == "SUCCESS"


def test_status_outside_the_enum_is_rejected_with_order_field_value_and_rule():
    err = broken("fulfillment_status", fulfillment_status="DELIVERED")
    assert err.order_id == "ORD-1"
    assert "'DELIVERED'" in str(err) and "SUCCESS or FAILURE" in str(err) and "ORD-1" in str(err)


def test_status_is_required():
    broken("fulfillment_status", fulfillment_status=None)


def test_command_is_required():
    broken("fulfillment_command", fulfillment_command=None)


@pytest.mark.parametrize("value", ["initiate_refund", " INVOICE", "Post_Txn_Split_Settlement"])
def test_command_case_is_normalised(value):
    assert make(fulfillment_command=value).fulfillment_command == value.strip().upper()


def test_unknown_command_is_rejected_and_the_message_says_how_to_enable_it():
    err = broken("fulfillment_command", fulfillment_command="SHIP_IT")
    assert "extra_commands" in err.rule


def test_unknown_command_is_accepted_when_enabled():
    record = FulfilmentRecord.from_mapping(
        {**GOOD, "fulfillment_command": "ship_it"}, extra_commands=["SHIP_IT"]
    )
    assert record.fulfillment_command == "SHIP_IT"


def test_protest_requires_failure():
    err = broken("fulfillment_status", fulfillment_command="PROTEST")
    assert "PROTEST" in err.rule
    assert make(fulfillment_command="PROTEST", fulfillment_status="FAILURE").fulfillment_command == "PROTEST"


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2024, 7, 8, 16, 30, 33, 999), "2024-07-08T16:30:33"),
        (dt.date(2024, 7, 8), "2024-07-08T00:00:00"),
        ("2024-07-08T16:30:33", "2024-07-08T16:30:33"),
        ("2024-07-08 16:30:33.123456", "2024-07-08T16:30:33"),
        ("2024-07-08", "2024-07-08T00:00:00"),
        ("2024-07-08T22:00:33+05:30", "2024-07-08T16:30:33"),
        ("2024-07-08T16:30:33Z", "2024-07-08T16:30:33"),
        (pendulum.datetime(2024, 7, 8, 22, 0, 33, tz="Asia/Kolkata"), "2024-07-08T16:30:33"),
        (dt.datetime(2024, 7, 8, 16, 30, 33, tzinfo=dt.timezone.utc), "2024-07-08T16:30:33"),
    ],
)
def test_time_input_forms_render_as_juspay_expects(value, expected):
    assert make(fulfillment_time=value).to_form()["fulfillment_time"] == expected


def test_naive_time_is_sent_as_given_whatever_the_zone():
    record = FulfilmentRecord.from_mapping(
        {**GOOD, "fulfillment_time": "2024-07-08T16:30:33"}, timezone="Asia/Kolkata"
    )
    assert record.fulfillment_time == "2024-07-08T16:30:33"


def test_aware_time_is_converted_to_the_configured_zone():
    when = dt.datetime(2024, 7, 8, 11, 0, 33, tzinfo=ZoneInfo("UTC"))
    record = FulfilmentRecord.from_mapping({**GOOD, "fulfillment_time": when}, timezone="Asia/Kolkata")
    assert record.fulfillment_time == "2024-07-08T16:30:33"


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "08/07/2024"])
def test_unparseable_time_is_rejected(value):
    err = broken("fulfillment_time", fulfillment_time=value)
    assert "ISO-8601" in err.rule


def test_time_of_the_wrong_type_is_rejected():
    broken("fulfillment_time", fulfillment_time=1720456233)


def test_unknown_zone_is_rejected_with_its_name():
    with pytest.raises(RecordError, match="Mars/Olympus"):
        FulfilmentRecord.from_mapping(
            {**GOOD, "fulfillment_time": "2024-07-08T16:30:33Z"}, timezone="Mars/Olympus"
        )


def test_data_text_is_sent_as_is():
    assert make(fulfillment_data="AWB 123, delivered").to_form()["fulfillment_data"] == "AWB 123, delivered"


def test_data_mapping_or_list_is_sent_as_compact_json():
    assert make(fulfillment_data={"awb": "A1", "n": 2}).fulfillment_data == '{"awb":"A1","n":2}'
    assert make(fulfillment_data=["a", "é"]).fulfillment_data == '["a","é"]'


def test_data_over_the_limit_is_rejected():
    err = broken("fulfillment_data", fulfillment_data="x" * (MAX_DATA_CHARS + 1))
    assert str(MAX_DATA_CHARS) in err.rule
    assert len(str(err)) < 300, "the message must not carry the whole value"


def test_pass_through_fields_are_sent_and_json_encoded():
    form = make(
        fulfillment_command="POST_TXN_SPLIT_SETTLEMENT",
        split_settlement_details={"vendor": [{"id": "v1", "amount": "10.00"}]},
    ).to_form()
    assert form["split_settlement_details"] == '{"vendor":[{"id":"v1","amount":"10.00"}]}'


def test_optional_ids_are_kept_and_routing_id_is_not_a_form_field():
    record = make(fulfillment_id=987, routing_id="cust-1")
    assert record.fulfillment_id == "987"
    assert record.routing_id == "cust-1"
    assert "routing_id" not in record.to_form()


def test_column_map_renames_source_columns():
    record = FulfilmentRecord.from_mapping(
        {"id": "ORD-7", "state": "failure", "cmd": "initiate_refund"},
        column_map={"id": "order_id", "state": "fulfillment_status", "cmd": "fulfillment_command"},
    )
    assert (record.order_id, record.fulfillment_status.value, record.fulfillment_command) == (
        "ORD-7",
        "FAILURE",
        "INITIATE_REFUND",
    )


def test_defaults_fill_missing_and_null_fields_but_do_not_override_values():
    defaults = {"fulfillment_command": "INVOICE", "fulfillment_data": "from default"}
    record = FulfilmentRecord.from_mapping(
        {
            "order_id": "O",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": None,
            "fulfillment_data": "row",
        },
        defaults=defaults,
    )
    assert record.fulfillment_command == "INVOICE"
    assert record.fulfillment_data == "row"


def test_defaults_naming_no_field_are_an_error():
    with pytest.raises(RecordError, match="not a record field"):
        FulfilmentRecord.from_mapping(GOOD, defaults={"fulfilment_command": "INVOICE"})


def test_unknown_source_columns_are_ignored():
    assert FulfilmentRecord.from_mapping({**GOOD, "customer_email": "a@b.c"}).to_form() == make().to_form()


def test_nan_from_a_dataframe_counts_as_null():
    assert make(fulfillment_id=float("nan")).fulfillment_id is None


def test_result_to_dict_is_json_friendly():
    result = FulfilmentResult(
        order_id="O", outcome=Outcome.REJECTED, http_status=400, error_code="X", attempts=1
    )
    assert result.to_dict()["outcome"] == "rejected"
    assert Outcome.REJECTED.is_failure and not Outcome.SENT.is_failure
    assert Outcome.ALREADY_FULFILLED.is_delivered and not Outcome.SKIPPED.is_delivered
    assert {o for o in Outcome if o.is_failure} == {
        Outcome.REJECTED,
        Outcome.FAILED,
        Outcome.INVALID,
        Outcome.NOT_ATTEMPTED,
    }
