"""Webhook test fixtures: a fake DNS at the edge, short retry settings, a loopback receiver."""

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.webhooks.receiver import Receiver, loopback_receiver
from webhooks import targets

PUBLIC_IP = "93.184.216.34"


class FakeDns(dict[str, list[str]]):
    """Host name → addresses, and every name looked up (in `calls`)."""

    def __init__(self, **entries: list[str]) -> None:
        super().__init__(entries)
        self.calls: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self[host])


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """Tests never touch real DNS: names resolve from this table; unknown ones do not."""
    fake = FakeDns()
    fake["hooks.example.com"] = [PUBLIC_IP]
    monkeypatch.setattr(targets, "resolve", fake.resolve)
    return fake


@pytest.fixture
def webhook_settings(settings: Any) -> Any:
    """Loopback receivers allowed, no jitter, the production retry schedule."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_RETRY_JITTER_PERCENT = 0
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with loopback_receiver() as running:
        yield running


def subscribe(api: Api, url: str, event_types: list[str] | None = None, **extra: Any) -> Any:
    response = api.post(
        "/v1/webhook-subscriptions",
        {"url": url, "event_types": event_types or ["lead.created"], **extra},
    )
    assert response.status_code == 201, response.content
    return response.json()
