from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gtm_api.selectors.payments import payment_get
from gtm_api.services.payments import payment_verify
from neuronx import errors
from neuronx.context import Actor


class Command(BaseCommand):
    help = (
        "Internal only: mark a payment verified. The lead becomes verified_paid and a case is "
        "opened (once; verifying again changes nothing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("payment_id")
        parser.add_argument("--provider-reference", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            payment = payment_get(tenant=None, payment_id=options["payment_id"])
            case = payment_verify(
                actor=Actor.system(payment.tenant, name="verify_payment"),
                payment_id=payment.id,
                provider_reference=options["provider_reference"],
            )
        except errors.ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stdout.write(
            f"Payment {payment.id} verified; lead {case.lead_id} handed off as {case.id}."
        )
