"""The bulk engine, free of Airflow: sources -> records -> dispatcher -> results -> report."""
