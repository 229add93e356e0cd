from datetime import datetime
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMonth

from usage.models import UsageEvent

PERIODS = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}


def usage_summary(
    *,
    tenant_slug: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    period: str = "day",
) -> list[dict[str, Any]]:
    """Totals per tenant × dimension × period, ordered; `since` inclusive, `until` exclusive."""
    events = UsageEvent.objects.all()
    if tenant_slug:
        events = events.filter(tenant__slug=tenant_slug)
    if since:
        events = events.filter(occurred_at__gte=since)
    if until:
        events = events.filter(occurred_at__lt=until)
    rows = (
        events.annotate(period_start=PERIODS[period]("occurred_at"))
        .values("tenant__slug", "dimension", "period_start")
        .annotate(quantity=Sum("quantity"), events=Count("id"))
        .order_by("tenant__slug", "dimension", "period_start")
    )
    return [
        {
            "tenant": row["tenant__slug"],
            "dimension": row["dimension"],
            "period": period,
            "period_start": row["period_start"].isoformat(),
            "quantity": row["quantity"],
            "events": row["events"],
        }
        for row in rows
    ]
