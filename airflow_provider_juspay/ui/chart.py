"""Outcomes per day as stacked bars, laid out here and drawn as SVG by the page's template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_juspay.sync.ledger.views import DayCounts

__all__ = ["GROUPS", "Bar", "Chart", "Segment", "outcomes_chart"]

#: What the bars stack, bottom up: a label, the outcomes it adds up, its colour.
GROUPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("delivered", ("sent", "already_fulfilled"), "#2f855a"),
    ("skipped", ("skipped",), "#a0aec0"),
    ("failed", ("rejected", "failed", "invalid"), "#c53030"),
    ("not sent", ("not_attempted", "held_elsewhere"), "#d69e2e"),
)


@dataclass(frozen=True)
class Segment:
    """One outcome group's part of a bar."""

    label: str
    value: int
    color: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One day's bar: its place, its total, its segments bottom up."""

    day: str
    x: float
    width: float
    total: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Chart:
    """The bars and the plot's size (the tallest bar is the busiest day)."""

    width: int
    height: int
    plot_height: int
    top: int
    bars: tuple[Bar, ...]
    peak: int


def outcomes_chart(days: Sequence[DayCounts], width: int = 720, height: int = 200) -> Chart:
    """Bars scaled to the busiest day; a day without rows has no bar, only its label."""
    top, bottom = 16, 28
    plot = height - top - bottom
    totals = [sum(d.counts.get(name, 0) for _, names, _ in GROUPS for name in names) for d in days]
    peak = max(totals, default=0)
    step = width / max(len(days), 1)
    bars = []
    for i, (day, total) in enumerate(zip(days, totals, strict=True)):
        y, segments = float(top + plot), []
        for label, names, color in GROUPS:
            value = sum(day.counts.get(name, 0) for name in names)
            if value and peak:
                h = plot * value / peak
                y -= h
                segments.append(Segment(label, value, color, round(y, 1), round(h, 1)))
        bars.append(
            Bar(day.day, round(i * step + step * 0.15, 1), round(step * 0.7, 1), total, tuple(segments))
        )
    return Chart(width, height, plot, top, tuple(bars), peak)
