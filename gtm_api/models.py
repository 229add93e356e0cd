"""The Sales OS data: leads and their lifecycle."""

from django.db import models
from django.db.models import F, Q

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
            # The lead list pages newest first (by id) within a tenant, whatever its size.
            models.Index(fields=["tenant", "id"]),
            models.Index(fields=["tenant", "stage", "id"]),
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "updated_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_closed(self) -> bool:
        return self.stage == Stage.VERIFIED_PAID


def _transition_id() -> str:
    return new_id("trn")


class StageTransition(models.Model):
    """One stage change of a lead: written in the same transaction as the change."""

    id = models.CharField(primary_key=True, max_length=40, default=_transition_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="transitions")
    from_stage = models.CharField(max_length=32, choices=Stage.choices)
    to_stage = models.CharField(max_length=32, choices=Stage.choices)
    cause = models.CharField(max_length=64)
    actor = models.CharField(max_length=100)
    request_id = models.CharField(max_length=128, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["lead", "id"])]

    def __str__(self) -> str:
        return f"{self.from_stage}->{self.to_stage}"


# -- qualification ------------------------------------------------------------------------------


class ScoringModel(models.Model):
    """A tenant's scoring model, versioned: installing a new one keeps the old versions."""

    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    definition = models.JSONField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "version"], name="scoring_unique_version"),
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(is_active=True), name="scoring_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


def _qualification_id() -> str:
    return new_id("qual")


class Qualification(models.Model):
    id = models.CharField(
        primary_key=True, max_length=40, default=_qualification_id, editable=False
    )
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="qualifications")
    score = models.PositiveSmallIntegerField()
    qualified = models.BooleanField()
    grade = models.CharField(max_length=1)
    factors = models.JSONField()
    model_version = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(score__lte=100), name="qual_score_range")]
        indexes = [models.Index(fields=["lead", "id"])]

    def __str__(self) -> str:
        return f"{self.lead_id}: {self.score}"


# -- routing ------------------------------------------------------------------------------------


class RoutingStrategy(models.TextChoices):
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_LOADED = "least_loaded"


class Team(models.Model):
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    # Round-robin position; read and advanced under a row lock so concurrent routes stay fair.
    rr_position = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="team_unique_key")]

    def __str__(self) -> str:
        return self.key


class Rep(models.Model):
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="reps")
    key = models.SlugField(max_length=64, help_text="The owner id leads show, e.g. a CRM user id.")
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=254, blank=True)
    is_active = models.BooleanField(default=True)
    weight = models.PositiveSmallIntegerField(default=1)
    capacity = models.PositiveIntegerField(null=True, blank=True)
    # Leads currently owned (assigned and not handed off); least_loaded reads it.
    load = models.PositiveIntegerField(default=0)
    # Smooth weighted round-robin state for the `weighted` strategy.
    current_weight = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "team", "key"], name="rep_unique_key"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="rep_weight_positive"),
        ]

    def __str__(self) -> str:
        return self.key


class RoutingRule(models.Model):
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    conditions = models.JSONField(default=list)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    strategy = models.CharField(max_length=16, choices=RoutingStrategy.choices)
    is_fallback = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "position"], name="rule_unique_position")
        ]

    def __str__(self) -> str:
        return self.name


def _assignment_id() -> str:
    return new_id("asg")


class Assignment(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_assignment_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="assignments")
    rep = models.ForeignKey(Rep, on_delete=models.PROTECT, related_name="+")
    owner = models.CharField(max_length=64)
    team = models.CharField(max_length=64)
    rule = models.CharField(max_length=100)
    strategy = models.CharField(max_length=16, choices=RoutingStrategy.choices)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["lead", "id"])]

    def __str__(self) -> str:
        return f"{self.lead_id} -> {self.owner}"


# -- appointments -------------------------------------------------------------------------------


class Channel(models.TextChoices):
    PHONE = "phone"
    VIDEO = "video"
    IN_PERSON = "in_person"


class AppointmentStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    CANCELED = "canceled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


def _appointment_id() -> str:
    return new_id("apt")


class Appointment(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_appointment_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="appointments")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    timezone = models.CharField(max_length=64)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    location = models.CharField(max_length=500, blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=AppointmentStatus.choices, default=AppointmentStatus.SCHEDULED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="apt_ends_after_start"
            )
        ]
        indexes = [models.Index(fields=["tenant", "id"]), models.Index(fields=["lead", "status"])]

    def __str__(self) -> str:
        return self.id


# -- payments -----------------------------------------------------------------------------------


class PaymentStatus(models.TextChoices):
    INITIATED = "initiated"
    VERIFIED = "verified"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


def _payment_id() -> str:
    return new_id("pay")


class Payment(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_payment_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="payments")
    appointment = models.ForeignKey(
        Appointment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.INITIATED
    )
    provider = models.CharField(max_length=32)
    checkout_reference = models.CharField(max_length=200)
    checkout_url = models.CharField(max_length=500, blank=True)
    provider_reference = models.CharField(max_length=200, blank=True)
    # The lead's stage before this payment, restored when it fails, is canceled or expires.
    previous_stage = models.CharField(max_length=32, choices=Stage.choices)
    failure_reason = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive")
        ]
        indexes = [
            models.Index(fields=["tenant", "id"]),
            models.Index(fields=["status", "expires_at"]),
        ]

    def __str__(self) -> str:
        return self.id


def _case_id() -> str:
    return new_id("case")


class CaseOpened(models.Model):
    """The hand-off record of a verified-paid lead: at most one per lead."""

    id = models.CharField(primary_key=True, max_length=40, default=_case_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    lead = models.OneToOneField(Lead, on_delete=models.CASCADE, related_name="case")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.id


# -- bulk imports -------------------------------------------------------------------------------


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"


ACTIVE_IMPORT_STATUSES = (ImportStatus.QUEUED, ImportStatus.PROCESSING)


class ImportMode(models.TextChoices):
    CREATE = "create"
    UPSERT = "upsert"


class ImportFormat(models.TextChoices):
    CSV = "csv"
    NDJSON = "ndjson"


class ImportSource(models.TextChoices):
    UPLOAD = "upload"
    URL = "url"
    INLINE = "inline"


def _import_id() -> str:
    return new_id("imp")


class LeadImport(models.Model):
    """A bulk import job. Its file lives in the default storage; its rows are imported in chunks.

    `received` is the number of rows in the file (0 until it has been read through once);
    `created + updated + failed` is how many have been processed, which is also where a resumed
    job continues: each chunk commits its leads, its row errors and these counts together.
    """

    id = models.CharField(primary_key=True, max_length=40, default=_import_id, editable=False)
    tenant = models.ForeignKey("neuronx.Tenant", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(
        "neuronx.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(
        max_length=32, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    mode = models.CharField(max_length=16, choices=ImportMode.choices, default=ImportMode.CREATE)
    dry_run = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=ImportSource.choices)
    # Known at submission for uploads and inline rows; for a URL once it has been fetched.
    format = models.CharField(max_length=16, choices=ImportFormat.choices, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    source_url = models.TextField(blank=True)
    file = models.FileField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    received = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # The worker processing the job holds a lease, renewed with every chunk; a job whose lease
    # has expired (its worker died) is resumed by the next worker that picks it up.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ImportStatus.values), name="import_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(mode__in=ImportMode.values), name="import_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(received__gte=F("created") + F("updated") + F("failed")),
                name="import_counts_within_received",
            ),
            models.CheckConstraint(
                condition=~Q(
                    status__in=[ImportStatus.COMPLETED, ImportStatus.COMPLETED_WITH_ERRORS]
                )
                | Q(received=F("created") + F("updated") + F("failed")),
                name="import_completed_counts_every_row",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "id"]),
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def processed(self) -> int:
        return self.created + self.updated + self.failed

    @property
    def is_finished(self) -> bool:
        return self.status not in ACTIVE_IMPORT_STATUSES


class LeadImportRowError(models.Model):
    """One problem with one row of an import: `{row, field, code, message}`.

    A row with several invalid fields has several; `field` is empty for a problem with the row
    as a whole (a ragged CSV row, an NDJSON line that is not an object).
    """

    job = models.ForeignKey(LeadImport, on_delete=models.CASCADE, related_name="row_errors")
    row = models.PositiveIntegerField()
    field = models.CharField(max_length=200, blank=True)
    code = models.CharField(max_length=64)
    message = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["job", "id"]), models.Index(fields=["job", "row"])]

    def __str__(self) -> str:
        return f"row {self.row}: {self.code}"
