"""A notifier that writes what it was asked to send to a file, as Slack or SMTP would send it."""

from __future__ import annotations

import os
from pathlib import Path

from airflow.providers.common.compat.notifier import BaseNotifier


class CapturingNotifier(BaseNotifier):
    """Renders ``text`` (``{{ juspay_report }}``) and appends it to $JUSPAY_TEST_NOTIFICATIONS."""

    template_fields = ("text",)

    def __init__(self, text: str = "{{ juspay_report }}") -> None:
        super().__init__()
        self.text = text

    def notify(self, context) -> None:
        with Path(os.environ["JUSPAY_TEST_NOTIFICATIONS"]).open("a") as sink:
            sink.write(self.text + "\n=====\n")
