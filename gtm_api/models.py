"""The Sales OS data: leads and their lifecycle."""

from django.db import models
from django.db.models import Q

from neuronx.ids import new_id


class Stage(models.TextChoices):
    NEW = "new"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    ROUTED = "routed"
    APPOINTMENT_SCHEDULED = "appointment_scheduled"
    PAYMENT_PENDING = "payment_pending"
    VERIFIED_PAID = "verified_paid"


def _lead_id() -> str:
    return new_id("lead")


class Lead(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_lead_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="leads")
    external_id = models.CharField(max_length=255, null=True, blank=True)
    email = models.CharField(max_length=254, null=True, blank=True)
    phone = models.CharField(max_length=20, null=True, blank=True)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    company = models.CharField(max_length=200, null=True, blank=True)
    job_title = models.CharField(max_length=200, null=True, blank=True)
    country = models.CharField(max_length=2, null=True, blank=True)
    source = models.CharField(max_length=64)
    attributes = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=32, choices=Stage.choices, default=Stage.NEW)
    score = models.PositiveSmallIntegerField(null=True, blank=True)
    owner = models.CharField(max_length=100, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=Q(email__isnull=False),
                name="lead_unique_email",
            ),
            models.UniqueConstraint(
                fields=["tenant", "external_id"],
                condition=Q(external_id__isnull=False),
                name="lead_unique_external_id",
            ),
            models.CheckConstraint(
                condition=Q(email__isnull=False) | Q(phone__isnull=False),
                name="lead_email_or_phone",
            ),
            models.CheckConstraint(condition=Q(score__lte=100), name="lead_score_range"),
            models.CheckConstraint(condition=Q(stage__in=Stage.values), name="lead_stage_valid"),
        ]
        indexes = [
            models.Index(fields=["tenant", "stage", "id"]),
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "updated_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_closed(self) -> bool:
        return self.stage == Stage.VERIFIED_PAID
