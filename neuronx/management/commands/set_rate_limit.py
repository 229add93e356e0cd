from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from neuronx.models import RATE_CLASSES
from neuronx.tenancy import TenancyError, tenant_get_by_slug, tenant_set_rate_limit


class Command(BaseCommand):
    help = (
        "Override a tenant's limit for one rate-limit class, e.g. `set_rate_limit acme write 5/m`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("rate_class", choices=RATE_CLASSES)
        parser.add_argument("rate", help="Like 5/m, 100/h, 10/30s.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_set_rate_limit(
                tenant=tenant_get_by_slug(slug=options["tenant_slug"]),
                rate_class=options["rate_class"],
                rate=options["rate"],
            )
        except TenancyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{tenant.slug}: {options['rate_class']} = {options['rate']}")
