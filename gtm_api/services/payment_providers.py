"""Payment providers: where a checkout is created. Verification never comes through here.

A real provider (Stripe, Adyen…) implements `PaymentProvider` and is selected with the
`PAYMENT_PROVIDER` setting; the built-in provider issues a checkout reference and URL and is what
development, tests and the demo use.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Checkout:
    reference: str
    url: str
    expires_at: datetime


class PaymentProvider(Protocol):
    name: str

    def checkout_create(
        self, *, payment_id: str, amount: int, currency: str, description: str
    ) -> Checkout: ...

    def checkout_cancel(self, *, reference: str) -> None: ...


class BuiltinProvider:
    """Issues opaque checkout references; a hosted page would collect the money."""

    name = "builtin"

    def checkout_create(
        self, *, payment_id: str, amount: int, currency: str, description: str
    ) -> Checkout:
        reference = f"chk_{secrets.token_urlsafe(18)}"
        return Checkout(
            reference=reference,
            url=f"{settings.PAYMENT_CHECKOUT_BASE_URL.rstrip('/')}/{reference}",
            expires_at=timezone.now() + timedelta(seconds=settings.PAYMENT_CHECKOUT_TTL_SECONDS),
        )

    def checkout_cancel(self, *, reference: str) -> None:
        return None


def payment_provider() -> PaymentProvider:
    provider: PaymentProvider = import_string(settings.PAYMENT_PROVIDER)()
    return provider
