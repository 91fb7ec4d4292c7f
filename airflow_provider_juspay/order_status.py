"""What Juspay's order statuses mean for waiting on an order: reached, failed for good, or not yet."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

__all__ = ["DEFAULT_TARGETS", "TERMINAL_FAILURES", "OrderStatus", "Verdict", "judge"]


class OrderStatus(str, Enum):
    """Juspay's order statuses (Order Status API ``status``; ``status_id`` in comments)."""

    NEW = "NEW"  # 10
    STARTED = "STARTED"  # 20
    CHARGED = "CHARGED"  # 21
    JUSPAY_DECLINED = "JUSPAY_DECLINED"  # 22
    PENDING_VBV = "PENDING_VBV"  # 23
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"  # 26
    AUTHORIZATION_FAILED = "AUTHORIZATION_FAILED"  # 27
    AUTHORIZING = "AUTHORIZING"  # 28
    AUTO_REFUNDED = "AUTO_REFUNDED"  # 36
    NOT_FOUND = "NOT_FOUND"  # 40


#: Fulfilment needs a successful transaction: CHARGED.
DEFAULT_TARGETS: tuple[str, ...] = (OrderStatus.CHARGED.value,)
#: Statuses an order does not leave: waiting on longer cannot succeed.
TERMINAL_FAILURES = frozenset(
    {
        OrderStatus.JUSPAY_DECLINED.value,
        OrderStatus.AUTHENTICATION_FAILED.value,
        OrderStatus.AUTHORIZATION_FAILED.value,
        OrderStatus.AUTO_REFUNDED.value,
    }
)


class Verdict(str, Enum):
    REACHED = "success"
    FAILED = "failed"
    WAITING = "waiting"


def judge(status: str, targets: Iterable[str], *, not_found_expired: bool) -> tuple[Verdict, str]:
    """Decide on one observed status; NOT_FOUND fails only once its grace period is over."""
    wanted = {t.upper() for t in targets}
    status = (status or "").upper()
    if status in wanted:
        return Verdict.REACHED, f"order reached {status}"
    if status in TERMINAL_FAILURES:
        return (
            Verdict.FAILED,
            f"order is {status}, which it will not leave (waiting for {', '.join(sorted(wanted))})",
        )
    if status == OrderStatus.NOT_FOUND.value:
        if not_found_expired:
            return Verdict.FAILED, "Juspay still does not know the order after the grace period"
        return Verdict.WAITING, "Juspay does not know the order yet"
    return Verdict.WAITING, f"order is {status}, waiting for {', '.join(sorted(wanted))}"
