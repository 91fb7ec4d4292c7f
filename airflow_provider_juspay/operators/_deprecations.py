"""Old argument names kept working for a while, with Airflow's provider deprecation warning."""

from __future__ import annotations

import warnings

from airflow.exceptions import AirflowProviderDeprecationWarning

__all__ = ["warn_renamed"]


def warn_renamed(old: str, new: str) -> None:
    """Warn that ``old`` is now called ``new`` (stacklevel: the DAG line that passed it)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in 1.0; use {new}",
        AirflowProviderDeprecationWarning,
        stacklevel=4,
    )
