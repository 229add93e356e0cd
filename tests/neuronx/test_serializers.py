"""Outputs with fields built once render exactly what DRF's own rendering gives."""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework import serializers

from gtm_api.models import Lead
from gtm_api.selectors.status import lead_status
from gtm_api.serializers import ConsentRecordInput, LeadCreateInput, LeadOutput
from gtm_api.services.payments import payment_verify
from gtm_api.status_serializers import LeadStatusOutput
from neuronx.context import Actor
from neuronx.serializers import FixedFieldsOutput, StrictQuery
from neuronx.views import _empty_query_is_valid
from tests.factories import ConsentRecordFactory, LeadFactory

pytestmark = pytest.mark.django_db


def drf_rendering(serializer: serializers.Serializer, instance: Any) -> Any:
    """What `Serializer.to_representation` gives: every field built for this one instance."""
    return serializers.Serializer.to_representation(serializer, instance)


def test_lead_output_matches_drf_field_for_field() -> None:
    full = LeadFactory(
        external_id="crm-1",
        phone="+442079460958",
        company="Analytical Engines Ltd",
        job_title="VP Engineering",
        country="GB",
        attributes={"utm_campaign": "spring", "employees": 120, "vip": True, "note": "Zoë"},
        score=87,
        owner="ada",
        stage="routed",
    )
    sparse = LeadFactory(email=None, phone="+4930901820")
    for lead in Lead.objects.filter(pk__in=[full.pk, sparse.pk]):
        assert LeadOutput(lead).data == drf_rendering(LeadOutput(), lead)
    leads = list(Lead.objects.order_by("id"))
    assert LeadOutput(leads, many=True).data == [drf_rendering(LeadOutput(), x) for x in leads]
    assert LeadOutput(full).data["created_at"].endswith("Z")


class Thing:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def label(self) -> str:
        return f"thing {self.name}"


class ThingOutput(FixedFieldsOutput):
    name = serializers.CharField()
    count = serializers.IntegerField()
    ratio = serializers.FloatField()
    ok = serializers.BooleanField()
    at = serializers.DateTimeField()
    optional = serializers.CharField(required=False)
    fallback = serializers.CharField(default="none")
    nullable = serializers.CharField(allow_null=True)
    label = serializers.CharField()  # a method: DRF calls it
    owner_name = serializers.CharField(source="owner.name", allow_null=True)
    raw = serializers.ReadOnlyField()
    secret = serializers.CharField(write_only=True)


@pytest.mark.parametrize(
    "values",
    [
        {
            "name": "a",
            "count": 3,
            "ratio": 0.5,
            "ok": True,
            "at": dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC),
            "optional": "here",
            "fallback": "set",
            "nullable": None,
            "owner": Thing(name="ada"),
            "raw": {"k": [1, 2]},
            "secret": "s",
        },
        {  # other types than the field's, another zone, attributes missing
            "name": 12,
            "count": "7",
            "ratio": 1,
            "ok": 1,
            "at": dt.datetime(2026, 11, 28, 9, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin")),
            "owner": None,
            "nullable": "x",
            "raw": None,
        },
        {  # a naive timestamp (made aware in the current zone), a year below 1000
            "name": "b",
            "count": 0,
            "ratio": 0.0,
            "ok": False,
            "at": dt.datetime(999, 1, 2, 3, 4, 5),
            "owner": Thing(name=None),
            "nullable": None,
            "raw": 0,
        },
    ],
)
def test_fixed_fields_follow_drf_rules_for_every_kind_of_field(values: dict[str, Any]) -> None:
    for instance in (Thing(**values), {**values, "label": "from a mapping"}):
        assert ThingOutput(instance).data == drf_rendering(ThingOutput(), instance)


def test_a_missing_required_attribute_fails_as_in_drf() -> None:
    instance = Thing(name="a", count=1, ratio=1.0, ok=True, nullable=None, owner=None, raw=1)
    with pytest.raises(AttributeError):
        drf_rendering(ThingOutput(), instance)
    with pytest.raises(AttributeError):
        ThingOutput(instance).data


def test_status_output_matches_drf(alice: Any) -> None:
    lead = LeadFactory(tenant=alice.tenant, stage="routed", owner="ada")
    for scope in ("contact.email", "payment.processing"):
        ConsentRecordFactory(lead=lead, scope=scope)
    soon = timezone.now() + dt.timedelta(days=1)
    alice.post(
        "/v1/appointments",
        {
            "lead_id": lead.id,
            "starts_at": soon.isoformat(),
            "ends_at": (soon + dt.timedelta(hours=1)).isoformat(),
            "timezone": "UTC",
            "channel": "video",
        },
    )
    payment = alice.post("/v1/payments", {"lead_id": lead.id, "amount": 1000, "currency": "USD"})
    payment_verify(actor=Actor.system(alice.tenant, "test"), payment_id=payment.json()["id"])

    status = lead_status(tenant=alice.tenant, lead_id=lead.id)
    rendered = LeadStatusOutput(status).data
    assert rendered == drf_rendering(LeadStatusOutput(), status)
    assert rendered["appointments"] and rendered["payments"] and rendered["history"]
    assert rendered["boundary"]["case_opened_at"].endswith("Z")


GOOD_LEAD = {
    "email": "Ada@Analytical-Engines.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "source": "web_form",
    "consents": [
        {
            "scope": "data.profiling",
            "granted": True,
            "captured_at": "2026-01-05T09:30:00Z",
            "source": "web_form",
        }
    ],
}
BAD_LEADS: list[Any] = [
    {**GOOD_LEAD, "first_name": 5, "colour": "red"},
    {**GOOD_LEAD, "email": None, "phone": None},
    {**GOOD_LEAD, "consents": [{"scope": "nope", "granted": "yes"}]},
    {"first_name": "Ada"},
    [],
]


def _outcome(serializer_class: type[serializers.Serializer], body: Any) -> Any:
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    return serializer.errors


def test_inputs_with_fields_built_once_validate_as_with_fields_built_per_instance() -> None:
    def fresh(body: Any) -> Any:  # DRF's way: this instance's own deep copies of the fields
        for cls in (LeadCreateInput, ConsentRecordInput):
            if "_fields_once" in cls.__dict__:
                delattr(cls, "_fields_once")
        return _outcome(LeadCreateInput, body)

    bodies = [GOOD_LEAD, *BAD_LEADS, GOOD_LEAD, *reversed(BAD_LEADS)]
    expected = [fresh(body) for body in bodies]
    assert [_outcome(LeadCreateInput, body) for body in bodies] == expected
    assert expected[0]["email"] == "ada@analytical-engines.com"
    assert all(outcome != expected[0] for outcome in expected[1 : len(BAD_LEADS) + 1])


def test_fields_built_once_are_shared_and_hold_no_request() -> None:
    first, second = LeadCreateInput(data=GOOD_LEAD), LeadCreateInput(data=BAD_LEADS[0])
    assert first.fields is second.fields
    assert all(field.parent not in (first, second) for field in first.fields.values())
    assert not hasattr(first.fields["email"].parent, "initial_data")


def test_an_empty_query_skips_only_serializers_that_would_validate_it_to_nothing() -> None:
    class Required(StrictQuery):
        stage = serializers.CharField()

    class Defaulted(StrictQuery):
        stage = serializers.CharField(required=False, default="new")

    class Validated(StrictQuery):
        stage = serializers.CharField(required=False)

        def validate(self, attrs: Any) -> Any:
            raise serializers.ValidationError("Send a stage.")

    class Plain(StrictQuery):
        stage = serializers.CharField(required=False)

    outcomes = [_outcome(cls, {}) for cls in (Required, Defaulted, Validated, Plain)]
    assert outcomes[1] == {"stage": "new"} and outcomes[3] == {}
    assert "stage" in outcomes[0] and "non_field_errors" in outcomes[2]
    skipped = [_empty_query_is_valid(cls) for cls in (Required, Defaulted, Validated, Plain)]
    assert skipped == [False, False, False, True]
