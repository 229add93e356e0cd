"""Tenancy (tenants, API keys) and the idempotency store."""

from django.db import models

from neuronx.ids import new_id

SCOPES = (
    "leads:read",
    "leads:write",
    "leads:qualify",
    "leads:route",
    "appointments:write",
    "payments:write",
    "webhooks:manage",
)

RATE_CLASSES = ("read", "write", "bulk", "webhooks")


def _tenant_id() -> str:
    return new_id("ten")


def _api_key_id() -> str:
    return new_id("key")


class Tenant(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_tenant_id, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    # Per-class rate overrides, e.g. {"write": "5/m"}; absent classes use settings.RATE_LIMITS.
    rate_limits = models.JSONField(default=dict, blank=True)
    # Largest single payment in major currency units; null uses settings.PAYMENT_MAX_MAJOR_UNITS.
    payment_max_major_units = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class ApiKey(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_api_key_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    # HMAC-SHA256 of the full key under settings.API_KEY_HASH_KEY; the key itself is never stored.
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix} ({self.tenant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETED = "completed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    locked_at = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.TextField(blank=True)
    response_headers = models.JSONField(default=dict)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_unique_tenant_key")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.key}"
