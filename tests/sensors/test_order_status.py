"""OrderStatusSensor's arguments as Airflow renders them, without a DAG run."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.sensors.fulfilment import OrderStatusSensor as ReExported
from airflow_provider_juspay.sensors.order_status import OrderStatusSensor


@pytest.mark.parametrize(
    "rendered, targets",
    [
        ("CHARGED", ["CHARGED"]),
        ("charged, AUTHORIZING", ["CHARGED", "AUTHORIZING"]),
        (["CHARGED", " auto_refunded "], ["CHARGED", "AUTO_REFUNDED"]),
        (("CHARGED",), ["CHARGED"]),
    ],
)
def test_target_statuses_are_kept_as_given_and_read_once_rendered(rendered, targets):
    sensor = OrderStatusSensor(task_id="wait", order_id="O-1", target_statuses=rendered)
    assert sensor.target_statuses == rendered, "a template field is assigned unchanged"
    assert sensor.targets() == targets


def test_a_templated_target_is_not_split_into_characters():
    sensor = OrderStatusSensor(task_id="wait", order_id="O-1", target_statuses="{{ params.status }}")
    assert sensor.target_statuses == "{{ params.status }}"
    sensor.target_statuses = "CHARGED"  # what Jinja leaves
    assert sensor.targets() == ["CHARGED"]


def test_the_sensor_is_still_importable_from_the_fulfilment_module():
    assert ReExported is OrderStatusSensor
