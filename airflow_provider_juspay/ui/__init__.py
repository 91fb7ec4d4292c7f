"""The Juspay page and run tab in Airflow's UI: reads of the ledger, rendered on the server."""
