"""Usage events: observational metering, one row per billable success."""

from django.db import models

from neuronx.ids import new_id

DIMENSIONS = (
    "lead.ingested",
    "lead.qualified",
    "lead.routed",
    "appointment.created",
    "payment.initiated",
    "webhook.delivered",
)


def _usage_id() -> str:
    return new_id("use")


class UsageEvent(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_usage_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    dimension = models.CharField(max_length=64, choices=[(d, d) for d in DIMENSIONS])
    quantity = models.PositiveIntegerField()
    occurred_at = models.DateTimeField()
    request_id = models.CharField(max_length=128, blank=True)
    api_key = models.ForeignKey(
        "neuronx.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(
        max_length=100, help_text="Who caused it: api_key:<id> or internal:<name>."
    )

    class Meta:
        indexes = [models.Index(fields=["tenant", "dimension", "occurred_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="usage_quantity_positive"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dimension} x{self.quantity}"
