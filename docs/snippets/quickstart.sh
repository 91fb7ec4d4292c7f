#!/usr/bin/env bash
# The landing page's five minutes, as a reader types them; tests/docs/test_quickstart.py runs the part
# between the markers (in a throw-away AIRFLOW_HOME, on a free port) and checks the run succeeded.
set -euo pipefail
# [START quickstart]
# 1. the bundled Juspay sandbox, on loopback, in the background
python -m airflow_provider_juspay.testing.sandbox --port 8765 --api-key sk_test_demo --merchant-id m1 &
# 2. a juspay connection to it, as an environment variable
export AIRFLOW_CONN_JUSPAY_DEFAULT='juspay://m1:sk_test_demo@127.0.0.1:8765'
# 3. the DAG below in your DAGs folder; run it once, in this process
airflow dags test juspay_bulk_from_xcom
# [END quickstart]
