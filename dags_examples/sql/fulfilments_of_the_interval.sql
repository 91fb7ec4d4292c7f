-- The fulfilments that changed during the DAG run's data interval, so `airflow backfill create` works
-- (the DAG's schedule must be a CronDataIntervalTimetable: a plain "@daily" has an empty interval).
-- Columns named like record fields are sent; others (id, customer_email, updated_at) are not.
SELECT id, order_id, fulfillment_status, fulfillment_command, fulfillment_time,
       fulfillment_id, fulfillment_data, routing_id, customer_email, updated_at
FROM fulfilments
WHERE updated_at >= '{{ data_interval_start.isoformat() }}'
  AND updated_at <  '{{ data_interval_end.isoformat() }}'
ORDER BY id
