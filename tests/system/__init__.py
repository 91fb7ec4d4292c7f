"""The system test: a real Airflow (Celery) deployment on loopback, driven over REST and in a browser."""
