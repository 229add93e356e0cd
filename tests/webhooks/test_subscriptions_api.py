"""/v1/webhook-subscriptions and /v1/event-types, as an integrator uses them."""

import json

import jsonschema
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import make_api, problem
from tests.webhooks.conftest import subscribe
from webhooks.events import CATALOG, SUBSCRIBABLE
from webhooks.models import Delivery, DeliveryStatus, Event, WebhookSubscription

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/neuronx"
CONTRACT_TYPES = {
    "lead.created",
    "lead.updated",
    "lead.qualified",
    "lead.disqualified",
    "lead.routed",
    "lead_import.completed",
    "appointment.created",
    "appointment.updated",
    "appointment.canceled",
    "payment.initiated",
    "payment.verified",
    "payment.failed",
    "case.opened",
}


def path(subscription_id: str, rest: str = "") -> str:
    return f"/v1/webhook-subscriptions/{subscription_id}{rest}"


def test_create_shows_the_secret_once(alice):
    response = alice.post(
        "/v1/webhook-subscriptions",
        {"url": URL, "event_types": ["lead.created", "payment.verified"], "description": "CRM"},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert response["Location"] == path(created["id"])
    assert created["id"].startswith("whsub_")
    assert created["is_active"] is True
    assert created["event_types"] == ["lead.created", "payment.verified"]
    assert response["RateLimit-Policy"].startswith('"webhooks"')

    shown = alice.get(path(created["id"])).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    listed = alice.get("/v1/webhook-subscriptions").json()
    assert [s["id"] for s in listed["results"]] == [created["id"]]
    assert created["secret"] not in json.dumps(listed)


def test_star_subscribes_to_every_type_and_duplicates_collapse(alice):
    assert subscribe(alice, URL, ["*", "lead.created"])["event_types"] == ["*"]
    assert subscribe(alice, URL, ["lead.created", "lead.created"])["event_types"] == [
        "lead.created"
    ]


def test_idempotent_replay_of_create_returns_the_same_subscription_once(alice):
    body = {"url": URL, "event_types": ["lead.created"]}
    first = alice.post("/v1/webhook-subscriptions", body, idempotency_key="sub-1")
    again = alice.post("/v1/webhook-subscriptions", body, idempotency_key="sub-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert WebhookSubscription.objects.filter(tenant=alice.tenant).count() == 1
    problem(
        alice.post(
            "/v1/webhook-subscriptions", {**body, "url": URL + "2"}, idempotency_key="sub-1"
        ),
        422,
        "idempotency_key_reused",
    )


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"event_types": ["lead.created"]}, "url", "required"),
        ({"url": URL}, "event_types", "required"),
        ({"url": URL, "event_types": []}, "event_types", "empty"),
        ({"url": URL, "event_types": "lead.created"}, "event_types", "not_a_list"),
        ({"url": URL, "event_types": ["lead.exploded"]}, "event_types[0]", "unknown_event_type"),
        ({"url": URL, "event_types": ["ping"]}, "event_types[0]", "unknown_event_type"),
        ({"url": "hooks.example.com/x", "event_types": ["lead.created"]}, "url", "invalid"),
        ({"url": "ftp://hooks.example.com/x", "event_types": ["lead.created"]}, "url", "invalid"),
        ({"url": "http://hooks.example.com/x", "event_types": ["*"]}, "url", "https_required"),
        ({"url": URL + "#frag", "event_types": ["*"]}, "url", "invalid"),
        ({"url": URL, "event_types": ["*"], "secret": "whsec_x"}, "secret", "unknown_field"),
        ({"url": URL, "event_types": ["*"], "id": "whsub_1"}, "id", "unknown_field"),
        ({"url": URL, "event_types": ["*"], "is_active": False}, "is_active", "unknown_field"),
        ({"url": URL, "event_types": ["*"], "description": "x" * 501}, "description", "max_length"),
        ({"url": 42, "event_types": ["*"]}, "url", "invalid"),
    ],
)
def test_bad_input_is_422_naming_the_field(alice, body, field, code):
    body = problem(alice.post("/v1/webhook-subscriptions", body), 422, "validation_error")
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body["errors"]
    assert not WebhookSubscription.objects.exists()


def test_url_length_limit(alice, settings):
    settings.WEBHOOK_URL_MAX_LENGTH = 60
    body = problem(
        alice.post(
            "/v1/webhook-subscriptions", {"url": URL + "/" + "a" * 40, "event_types": ["*"]}
        ),
        422,
        "validation_error",
    )
    assert body["errors"][0]["code"] == "max_length"
    subscribe(alice, URL, ["*"])


def test_malformed_and_missing_idempotency_key(alice):
    problem(alice.post("/v1/webhook-subscriptions", raw=b"{not json"), 400, "malformed_request")
    problem(
        alice.post(
            "/v1/webhook-subscriptions", {"url": URL, "event_types": ["*"]}, idempotency_key=None
        ),
        400,
        "idempotency_key_required",
    )


def test_subscriptions_per_tenant_are_limited(alice, bob, settings):
    settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_TENANT = 2
    subscribe(alice, URL)
    subscribe(alice, URL)
    problem(
        alice.post("/v1/webhook-subscriptions", {"url": URL, "event_types": ["*"]}),
        409,
        "webhook_limit_reached",
    )
    subscribe(bob, URL)  # per tenant


def test_update_url_types_description_and_state(alice, dns):
    created = subscribe(alice, URL, ["lead.created"])
    dns["other.example.com"] = ["198.41.0.4"]
    response = alice.patch(
        path(created["id"]),
        {
            "url": "https://other.example.com/h",
            "event_types": ["payment.verified"],
            "description": "payments",
        },
    )
    assert response.status_code == 200, response.content
    updated = response.json()
    assert (updated["url"], updated["event_types"], updated["description"]) == (
        "https://other.example.com/h",
        ["payment.verified"],
        "payments",
    )
    assert "secret" not in updated
    assert alice.patch(path(created["id"]), {"is_active": False}).json()["is_active"] is False
    problem(alice.patch(path(created["id"]), {"url": "https://10.0.0.1/"}), 422, "validation_error")
    problem(alice.patch(path(created["id"]), {"secret": "whsec_AAAA"}), 422, "validation_error")
    problem(alice.patch(path(created["id"]), {"disabled_reason": ""}), 422, "validation_error")


def test_deactivating_cancels_pending_deliveries_and_reactivating_clears_the_record(alice):
    created = subscribe(alice, URL, ["*"])
    subscription = WebhookSubscription.objects.get(pk=created["id"])
    event = Event.objects.create(tenant=alice.tenant, type="lead.created", data={})
    delivery = Delivery.objects.create(
        tenant=alice.tenant, subscription=subscription, event=event, event_type=event.type
    )
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        disabled_reason="old", failing_since=event.created_at
    )
    alice.patch(path(created["id"]), {"is_active": False})
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELED
    assert delivery.note == "The subscription was deactivated."
    again = alice.patch(path(created["id"]), {"is_active": True}).json()
    assert again["is_active"] is True
    assert (again["disabled_reason"], again["failing_since"]) == ("", None)


def test_delete_is_204_then_404(alice):
    created = subscribe(alice, URL)
    response = alice.client.delete(path(created["id"]), headers=alice._headers(None))
    assert response.status_code == 204
    assert response.content == b""
    problem(alice.get(path(created["id"])), 404, "not_found")


def test_rotate_secret_shows_the_new_secret_and_the_overlap(alice):
    created = subscribe(alice, URL)
    response = alice.post(path(created["id"], "/rotate-secret"))
    assert response.status_code == 200, response.content
    rotated = response.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    subscription = WebhookSubscription.objects.get(pk=created["id"])
    assert subscription.previous_secret == created["secret"]

    revoked = alice.post(path(created["id"], "/rotate-secret"), {"overlap_seconds": 0}).json()
    subscription.refresh_from_db()
    assert (subscription.previous_secret, revoked["previous_secret_expires_at"]) == ("", None)
    for bad in ({"overlap_seconds": -1}, {"overlap_seconds": 10**9}, {"secret": "x"}):
        problem(alice.post(path(created["id"], "/rotate-secret"), bad), 422, "validation_error")


def test_another_tenants_subscription_is_404_everywhere(alice, charlie):
    created = subscribe(alice, URL)
    event = Event.objects.create(tenant=alice.tenant, type="lead.created", data={})
    delivery = Delivery.objects.create(
        tenant=alice.tenant,
        subscription_id=created["id"],
        event=event,
        event_type=event.type,
        status=DeliveryStatus.FAILED,
    )
    sid = created["id"]
    for response in (
        charlie.get(path(sid)),
        charlie.patch(path(sid), {"is_active": False}),
        charlie.client.delete(path(sid), headers=charlie._headers(None)),
        charlie.post(path(sid, "/rotate-secret")),
        charlie.post(path(sid, "/test")),
        charlie.get(path(sid, "/deliveries")),
        charlie.get(path(sid, f"/deliveries/{delivery.id}")),
        charlie.post(path(sid, f"/deliveries/{delivery.id}/redeliver")),
    ):
        problem(response, 404, "not_found")
    assert charlie.get("/v1/webhook-subscriptions").json()["results"] == []
    subscription = WebhookSubscription.objects.get(pk=sid)
    assert subscription.is_active and subscription.secret == created["secret"]
    assert not Event.objects.filter(type="ping").exists()
    # A delivery is only found under its own subscription.
    other = subscribe(alice, URL)
    problem(alice.get(path(other["id"], f"/deliveries/{delivery.id}")), 404, "not_found")


def test_a_key_without_webhooks_manage_is_403(db):
    api = make_api("dora", scopes=["leads:read", "leads:write"])
    body = problem(
        api.post("/v1/webhook-subscriptions", {"url": URL, "event_types": ["*"]}),
        403,
        "permission_denied",
    )
    assert body["required_scope"] == "webhooks:manage"
    problem(api.get("/v1/event-types"), 403, "permission_denied")


def test_deliveries_log_lists_newest_first_with_attempts_in_constant_queries(alice):
    created = subscribe(alice, URL, ["*"])

    def add(count: int) -> None:
        for _ in range(count):
            event = Event.objects.create(tenant=alice.tenant, type="lead.created", data={})
            delivery = Delivery.objects.create(
                tenant=alice.tenant,
                subscription_id=created["id"],
                event=event,
                event_type=event.type,
                status=DeliveryStatus.FAILED,
                attempt_count=2,
            )
            for number in (1, 2):
                delivery.attempts.create(
                    number=number,
                    trigger="automatic",
                    requested_at=event.created_at,
                    status_code=500,
                    latency_ms=12,
                    response_excerpt="boom",
                    error="HTTP 500: only a 2xx status counts as delivered.",
                )

    def queries() -> tuple[int, dict]:
        with CaptureQueriesContext(connection) as captured:
            response = alice.get(path(created["id"], "/deliveries"))
        assert response.status_code == 200, response.content
        return len(captured), response.json()

    add(2)
    few, _ = queries()
    add(8)
    many, body = queries()
    assert many == few
    assert len(body["results"]) == 10
    ids = [d["id"] for d in body["results"]]
    assert ids == sorted(ids, reverse=True)
    first = body["results"][0]
    assert [a["number"] for a in first["attempts"]] == [1, 2]
    assert first["attempts"][0]["status_code"] == 500
    assert set(first["attempts"][0]) == {
        "number",
        "trigger",
        "requested_at",
        "status_code",
        "latency_ms",
        "response_excerpt",
        "error",
        "succeeded",
    }
    page = alice.get(path(created["id"], "/deliveries"), {"limit": 3}).json()
    assert len(page["results"]) == 3 and page["next"]
    assert (
        alice.get(path(created["id"], "/deliveries"), {"status": "succeeded"}).json()["results"]
        == []
    )
    problem(
        alice.get(path(created["id"], "/deliveries"), {"status": "lost"}), 422, "validation_error"
    )
    problem(alice.get(path(created["id"], "/deliveries"), {"sort": "x"}), 422, "validation_error")
    deliveries = alice.get(path(created["id"], "/deliveries"))
    assert deliveries["RateLimit-Policy"].startswith('"read"')


def test_event_types_list_every_type_with_a_json_schema(alice):
    response = alice.get("/v1/event-types")
    assert response.status_code == 200, response.content
    assert response["RateLimit-Policy"].startswith('"read"')
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    by_type = {t["type"]: t for t in body["results"]}
    assert set(by_type) == set(CATALOG)
    assert set(SUBSCRIBABLE) >= CONTRACT_TYPES
    assert by_type["ping"]["subscribable"] is False
    for entry in body["results"]:
        assert entry["description"]
        jsonschema.Draft202012Validator.check_schema(entry["schema"])
        assert "$ref" not in json.dumps(entry["schema"])
    lead = by_type["lead.created"]["schema"]["properties"]["lead"]
    assert {"id", "email", "stage", "created_at"} <= set(lead["properties"])
    assert lead["properties"]["email"]["type"] == ["string", "null"]
    problem(alice.get("/v1/event-types", {"limit": 5}), 422, "validation_error")


def test_the_openapi_document_publishes_every_event_type(anonymous):
    schema = anonymous.client.get("/v1/schema", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    mapping = components["WebhookEvent"]["discriminator"]["mapping"]
    assert set(mapping) == set(CATALOG)
    assert set(schema["x-webhooks"]) == set(CATALOG)
    lead_created = components["LeadCreatedEvent"]
    assert lead_created["required"] == ["id", "type", "created_at", "tenant_id", "data"]
    assert lead_created["properties"]["data"]["properties"]["lead"] == {
        "$ref": "#/components/schemas/LeadOutput"
    }
    for target in mapping.values():
        assert target.rsplit("/", 1)[1] in components
    operations = schema["paths"][
        "/v1/webhook-subscriptions/{id}/deliveries/{delivery_id}/redeliver"
    ]
    assert operations["post"]["x-neuronx-operation"]["rate_class"] == "webhooks"
    listed = schema["paths"]["/v1/event-types"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventTypeListOutput"
    }
    create = components["WebhookSubscriptionCreateInputRequest"]["properties"]
    names = create["event_types"]["items"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert set(components[names]["enum"]) == {"*", *SUBSCRIBABLE}
