"""Apache Airflow provider that tells Juspay what happened to each paid order.

What Airflow reads of it (connection type, classes, asset URIs) is in :mod:`.get_provider_info`.
"""

from __future__ import annotations

__version__ = "1.0.0"

__all__ = ["__version__"]
