"""Airflow Assets for what the provider writes: ``juspay://<merchant id>/fulfillment``."""
