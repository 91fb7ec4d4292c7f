"""The XCom keys of the provider: one key, ``report``, for the report on every task that makes one."""

from __future__ import annotations

#: The run's report (``RunReport.to_dict()``), pushed by every task that makes one: both operators and
#: the failure sensor. Mapped tasks push one per map index.
REPORT_KEY = "report"
#: Deprecated (removed in 2.0): the single-order operator's results when it failed; its return value
#: holds them.
DEPRECATED_RESULTS_KEY = "results"
#: Deprecated (removed in 2.0): the failure sensor's report; read ``report``.
DEPRECATED_FAILURES_KEY = "failures"
