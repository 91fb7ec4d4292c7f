-- The fulfilments that changed during the DAG run's data interval, so `airflow backfill create` works
-- (the DAG's schedule must be a CronDataIntervalTimetable: a plain "@daily" has an empty interval).
-- The bounds are written 'YYYY-MM-DD HH:MM:SS' (UTC, no zone): right for timestamp and timestamptz
-- columns (read in the session's zone: keep it UTC) and for text columns in either ISO form,
-- '2026-11-25 00:00:00' or '2026-11-25T00:00:00' (a bound with '+00:00' or a 'T' sorts after the
-- rows it should take in; see docs/howto/nightly.md, "The window").
-- Columns named like record fields are sent; others (id, customer_email, updated_at) are not.
SELECT id, order_id, fulfillment_status, fulfillment_command, fulfillment_time,
       fulfillment_id, fulfillment_data, routing_id, customer_email, updated_at
FROM fulfilments
WHERE updated_at >= '{{ data_interval_start.to_datetime_string() }}'
  AND updated_at <  '{{ data_interval_end.to_datetime_string() }}'
ORDER BY id
