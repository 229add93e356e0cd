"""Appointment input and output serializers."""

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gtm_api.lead_fields import FieldInvalid, normalize_phone
from gtm_api.models import Appointment, AppointmentStatus, Channel
from neuronx.serializers import StrictInput, StrictQuery

MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=8)
MAX_HORIZON = timedelta(days=366)
PAST_TOLERANCE = timedelta(minutes=5)
# The zone database's keys; `localtime` and `posixrules` are files of the system's copy, not zones.
_TIMEZONES = frozenset(available_timezones() - {"localtime", "posixrules"})
RESCHEDULE_FIELDS = ("starts_at", "ends_at", "timezone", "channel", "location")


# Not an enum of the ~600 names: the set is the server's copy of the zone database, which
# changes with its version, and a request is refused with the name when it is not in it.
@extend_schema_field(
    {
        "type": "string",
        "pattern": "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
        "description": "IANA time zone name, e.g. Europe/Berlin.",
    }
)
class TimezoneField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        name = super().to_internal_value(data)
        if name not in _TIMEZONES:
            raise serializers.ValidationError(
                f"{name!r} is not an IANA time zone (e.g. Europe/Berlin).", code="invalid_timezone"
            )
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                f"{name!r} is not an IANA time zone.", code="invalid_timezone"
            ) from None
        return name


def _check_window(starts_at: Any, ends_at: Any, *, new: bool) -> None:
    errors: dict[str, list[str]] = {}
    if ends_at <= starts_at:
        errors["ends_at"] = ["Must be after starts_at."]
    elif ends_at - starts_at < MIN_DURATION:
        errors["ends_at"] = [f"An appointment lasts at least {MIN_DURATION}."]
    elif ends_at - starts_at > MAX_DURATION:
        errors["ends_at"] = [f"An appointment lasts at most {MAX_DURATION}."]
    now = timezone.now()
    if new and starts_at < now - PAST_TOLERANCE:
        errors["starts_at"] = ["Must not be in the past."]
    elif starts_at > now + MAX_HORIZON:
        errors["starts_at"] = [f"Must be within {MAX_HORIZON.days} days from now."]
    if errors:
        raise serializers.ValidationError(errors, code="invalid_window")


def _check_location(channel: str, location: str | None) -> str | None:
    """in_person needs an address; video a https link if given; phone an E.164 number if given."""
    if channel == Channel.IN_PERSON and not location:
        raise serializers.ValidationError(
            {"location": ["An in-person appointment needs an address."]}, code="required"
        )
    if channel == Channel.VIDEO and location and not location.startswith("https://"):
        raise serializers.ValidationError(
            {"location": ["A video appointment's location must be an https:// link."]},
            code="invalid_url",
        )
    if channel == Channel.PHONE and location:
        try:
            return normalize_phone(location)
        except FieldInvalid as exc:
            raise serializers.ValidationError({"location": [exc.message]}, code=exc.code) from None
    return location


class AppointmentCreateInput(StrictInput):
    lead_id = serializers.CharField(max_length=64)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    timezone = TimezoneField(max_length=64, help_text="IANA time zone of the attendee.")
    channel = serializers.ChoiceField(choices=Channel.choices)
    location = serializers.CharField(
        max_length=500,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="in_person: the address (required); video: an https link; phone: E.164.",
    )
    notes = serializers.CharField(
        max_length=5000, required=False, allow_null=True, allow_blank=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _check_window(attrs["starts_at"], attrs["ends_at"], new=True)
        attrs["location"] = _check_location(attrs["channel"], attrs.get("location"))
        return attrs


class AppointmentUpdateInput(StrictInput):
    """Reschedule (times, zone, channel, location, notes) or set `status`; not both."""

    openapi_constraints = {
        "minProperties": 1,
        "not": {"anyOf": [{"required": ["status", name]} for name in RESCHEDULE_FIELDS]},
    }

    starts_at = serializers.DateTimeField(required=False)
    ends_at = serializers.DateTimeField(required=False)
    timezone = TimezoneField(max_length=64, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    location = serializers.CharField(
        max_length=500, required=False, allow_null=True, allow_blank=True
    )
    notes = serializers.CharField(
        max_length=5000, required=False, allow_null=True, allow_blank=True
    )
    status = serializers.ChoiceField(
        choices=[s for s in AppointmentStatus.values if s != AppointmentStatus.SCHEDULED],
        required=False,
        help_text="Outcome: canceled, completed or no_show.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        appointment: Appointment = self.context["appointment"]
        if not attrs:
            raise serializers.ValidationError(
                {"": ["Send at least one field to change."]}, code="empty"
            )
        reschedule = set(RESCHEDULE_FIELDS) & set(attrs)
        if "status" in attrs and reschedule:
            raise serializers.ValidationError(
                {"status": ["Set status alone (with notes at most), not with a reschedule."]},
                code="conflict",
            )
        if {"starts_at", "ends_at"} & set(attrs):
            _check_window(
                attrs.get("starts_at", appointment.starts_at),
                attrs.get("ends_at", appointment.ends_at),
                new=True,
            )
        if {"channel", "location"} & set(attrs):
            channel = attrs.get("channel", appointment.channel)
            location = attrs.get("location", appointment.location)
            attrs["location"] = _check_location(channel, location)
        return attrs


class AppointmentOutput(serializers.ModelSerializer):
    class Meta:
        model = Appointment
        fields = [
            "id",
            "lead_id",
            "starts_at",
            "ends_at",
            "timezone",
            "channel",
            "location",
            "notes",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AppointmentListQuery(StrictQuery):
    lead_id = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(required=False, choices=AppointmentStatus.choices)
    starts_after = serializers.DateTimeField(required=False)
    starts_before = serializers.DateTimeField(required=False)
