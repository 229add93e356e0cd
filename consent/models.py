"""The consent ledger: append-only records per lead and scope."""

from django.db import models

from neuronx.ids import new_id

CONSENT_SCOPES = (
    "contact.email",
    "contact.sms",
    "contact.phone",
    "data.profiling",
    "payment.processing",
)


def _consent_id() -> str:
    return new_id("cns")


class ConsentRecord(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_consent_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey("gtm_api.Lead", on_delete=models.CASCADE, related_name="consents")
    scope = models.CharField(max_length=32, choices=[(s, s) for s in CONSENT_SCOPES])
    granted = models.BooleanField()
    captured_at = models.DateTimeField()
    source = models.CharField(max_length=64)
    evidence = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    recorded_by = models.CharField(max_length=100)
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [models.Index(fields=["lead", "scope", "captured_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__isnull=True)
                | models.Q(expires_at__gt=models.F("captured_at")),
                name="consent_expiry_after_capture",
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope}={'granted' if self.granted else 'revoked'}"
