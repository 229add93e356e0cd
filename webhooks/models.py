"""The event outbox, webhook subscriptions, and the delivery log (one delivery per subscription
and event, every attempt of it recorded)."""

from django.db import models

from neuronx.ids import new_id


def _event_id() -> str:
    return new_id("evt")


def _subscription_id() -> str:
    return new_id("whsub")


def _delivery_id() -> str:
    return new_id("whdel")


def _attempt_id() -> str:
    return new_id("whatt")


class Event(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_event_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=64)
    data = models.JSONField()
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once the dispatcher has fanned the event out to subscriptions.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["dispatched_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    def envelope(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "tenant_id": self.tenant_id,
            "data": self.data,
        }


class WebhookSubscription(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_subscription_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    # Length is limited by settings.WEBHOOK_URL_MAX_LENGTH when the URL is registered.
    url = models.TextField()
    description = models.CharField(max_length=500, blank=True)
    # Event type names, or ["*"] for every subscribable type.
    event_types = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    # The signing secrets (`whsec_…`). They must be readable to sign, so they are stored as is;
    # they never leave the database except once, in the create and rotate-secret responses.
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Why the subscription was disabled automatically (410 Gone, or failing too long).
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Start of the current run of failed attempts; cleared by any success.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "is_active"])]

    def __str__(self) -> str:
        # Never the URL (it may carry a token) and never a secret.
        return self.id

    def __repr__(self) -> str:
        return f"<WebhookSubscription {self.id}>"

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # an attempt is due now or later
    SUCCEEDED = "succeeded"  # the last attempt got a 2xx
    FAILED = "failed"  # retries exhausted, or the attempt was final (410, manual, too large)
    CANCELED = "canceled"  # the subscription was disabled while the delivery was pending
    SKIPPED = "skipped"  # a log note, never sent (e.g. the `subscription.disabled` notice)


class Delivery(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_delivery_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    # The pending attempt was asked for by hand (redeliver, test ping): one attempt, no retries.
    manual = models.BooleanField(default=False)
    attempt_count = models.PositiveIntegerField(default=0)
    # Automatic attempts made so far: the position in the retry schedule.
    automatic_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker holds the delivery until then; an expired lease means the worker died.
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], name="webhook_delivery_once_per_subscription"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["subscription", "id"]),
            # The log's retention purge (webhooks/retention.py).
            models.Index(fields=["finished_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id} ({self.status})"


class DeliveryAttempt(models.Model):
    class Trigger(models.TextChoices):
        AUTOMATIC = "automatic"
        MANUAL = "manual"

    id = models.CharField(primary_key=True, max_length=40, default=_attempt_id, editable=False)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # The first 1 KiB of the response body, decoded as UTF-8 (invalid bytes replaced).
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number")
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"
