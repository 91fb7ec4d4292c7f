"""Old names kept working for one major release, with Airflow's provider deprecation warning."""

from __future__ import annotations

import warnings

from airflow.exceptions import AirflowProviderDeprecationWarning

__all__ = ["REMOVED_IN", "refuse_removed", "warn_deprecated"]

#: The release that removes what is deprecated now.
REMOVED_IN = "2.0"


def warn_deprecated(old: str, instead: str) -> None:
    """Warn that ``old`` goes in :data:`REMOVED_IN` (stacklevel: the DAG line that passed it)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in {REMOVED_IN}; use {instead}",
        AirflowProviderDeprecationWarning,
        stacklevel=4,
    )


def refuse_removed(kwargs: dict[str, object], renamed: dict[str, str]) -> None:
    """Name the replacement of an argument a past release renamed and 1.0 removed (Airflow's own error
    would only say the argument is invalid)."""
    for old, new in renamed.items():
        if old in kwargs:
            raise TypeError(f"{old} was renamed {new} in 0.2 and removed in 1.0: use {new}")
