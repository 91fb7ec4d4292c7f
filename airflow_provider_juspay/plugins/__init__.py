"""The provider's Airflow plugin (registered by the ``airflow.plugins`` entry point)."""
