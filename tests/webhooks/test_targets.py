"""SSRF: internal addresses are refused at registration and again at connect time."""

import ipaddress

import httpx
import pytest

from neuronx.context import Actor
from tests.conftest import problem
from tests.webhooks.conftest import PUBLIC_IP, subscribe
from webhooks.delivery import delivery_attempt
from webhooks.dispatch import event_dispatch
from webhooks.models import Delivery, WebhookSubscription
from webhooks.services import event_publish
from webhooks.targets import PinnedTransport, TargetForbidden, address_problem

pytestmark = pytest.mark.django_db

FORBIDDEN = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "192.0.2.10",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:8.8.8.8",  # IPv4-mapped, even of a public address
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001::1",  # Teredo
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_public_addresses_are_named(address):
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert address_problem(ipaddress.ip_address(address)) is None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", FORBIDDEN)
def test_bare_ips_in_forbidden_ranges_are_refused_at_registration(alice, address):
    body = problem(
        alice.post(
            "/v1/webhook-subscriptions",
            {"url": f"https://{_host(address)}/hook", "event_types": ["*"]},
        ),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "url"
    assert body["errors"][0]["code"] in ("forbidden_target", "invalid")


def test_a_name_resolving_to_a_private_address_is_refused(alice, dns):
    dns["intranet.example.com"] = ["10.1.2.3"]
    dns["mixed.example.com"] = [PUBLIC_IP, "127.0.0.1"]  # every address must be public
    dns["metadata.example.com"] = ["169.254.169.254"]
    for host in ("intranet.example.com", "mixed.example.com", "metadata.example.com"):
        body = problem(
            alice.post(
                "/v1/webhook-subscriptions", {"url": f"https://{host}/h", "event_types": ["*"]}
            ),
            422,
            "validation_error",
        )
        assert body["errors"][0]["code"] == "forbidden_target"
        assert "resolves to" in body["errors"][0]["message"]
    assert not WebhookSubscription.objects.exists()


def test_unresolvable_hosts_credentials_and_plain_http_are_refused(alice):
    cases = {
        "https://nowhere.example.com/h": "unresolvable_host",
        "https://user:pass@hooks.example.com/h": "credentials_not_allowed",
        "http://hooks.example.com/h": "https_required",
        "https://hooks.example.com:99999/h": "invalid",
    }
    for url, code in cases.items():
        body = problem(
            alice.post("/v1/webhook-subscriptions", {"url": url, "event_types": ["*"]}),
            422,
            "validation_error",
        )
        assert body["errors"][0]["code"] == code, (url, body)


def test_public_https_targets_on_any_port_are_accepted(alice):
    subscribe(alice, "https://hooks.example.com:8443/neuronx?tenant=a")
    subscribe(alice, f"https://{PUBLIC_IP}/neuronx")


def test_private_targets_are_allowed_only_when_configured(alice, settings, dns):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    subscribe(alice, "http://127.0.0.1:8080/hook")
    subscribe(alice, "http://receiver.local/hook")  # not even resolved at registration
    assert dns.calls == []


def _pending_delivery(api, url: str) -> Delivery:
    subscription = subscribe(api, url, ["lead.created"])
    from django.db import transaction

    with transaction.atomic():
        event = event_publish(
            actor=Actor(tenant=api.tenant, internal="test"), type="lead.created", data={}
        )
    event_dispatch(event_id=event.id)
    return Delivery.objects.get(subscription_id=subscription["id"])


def test_dns_rebinding_is_refused_at_connect_time(alice, dns, receiver, settings):
    dns["rebind.example.com"] = [PUBLIC_IP]
    delivery = _pending_delivery(alice, f"https://rebind.example.com:{receiver.port}/hook")
    dns["rebind.example.com"] = ["127.0.0.1"]  # the attacker's DNS now points inside
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and not attempt.succeeded
    assert attempt.status_code is None
    assert attempt.error.startswith("Refused to connect: ")
    assert "127.0.0.1" in attempt.error and "loopback" in attempt.error
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at is not None  # retried


def test_a_target_stored_while_private_was_allowed_is_refused_later(alice, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    delivery = _pending_delivery(alice, receiver.url())
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None
    assert "Refused to connect" in attempt.error or "https" in attempt.error
    assert receiver.requests == []


def test_the_connection_goes_to_the_validated_address_with_the_original_host(
    alice, dns, receiver, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    dns["receiver.test"] = ["127.0.0.1"]
    delivery = _pending_delivery(alice, f"http://receiver.test:{receiver.port}/hook")
    dns.calls.clear()
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert attempt is not None and attempt.succeeded, attempt.error
    assert dns.calls == ["receiver.test"]  # resolved once, then connected to that address
    assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"


def test_https_keeps_the_name_for_sni_and_certificate_checks(dns):
    dns["hooks.example.com"] = [PUBLIC_IP]
    seen: list[httpx.Request] = []
    transport = PinnedTransport()
    transport._inner = httpx.MockTransport(  # type: ignore[assignment]
        lambda request: seen.append(request) or httpx.Response(204)
    )
    with httpx.Client(transport=transport) as client:
        client.post("https://hooks.example.com:8443/neuronx?x=1", content=b"{}")
    (request,) = seen
    assert request.url.host == PUBLIC_IP
    assert request.url.port == 8443 and request.url.path == "/neuronx"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"

    dns["hooks.example.com"] = ["10.0.0.7"]
    with httpx.Client(transport=transport) as client, pytest.raises(TargetForbidden):
        client.post("https://hooks.example.com/neuronx", content=b"{}")
    assert len(seen) == 1
