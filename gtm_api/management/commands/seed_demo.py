from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from neuronx.models import Tenant
from neuronx.tenancy import api_key_create


class Command(BaseCommand):
    help = "Create or reuse a demo tenant and print a new full-scope API key as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default="demo", help="Tenant slug (default: demo).")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        tenant, created = Tenant.objects.get_or_create(
            slug=options["tenant"], defaults={"name": f"{options['tenant'].title()} Inc."}
        )
        issued = api_key_create(tenant=tenant, name="seed_demo")
        self.stdout.write(
            f"{'Created' if created else 'Reusing'} tenant {tenant.slug} ({tenant.id}). "
            "A new full-scope API key follows; it will not be shown again:"
        )
        self.stdout.write(issued.plaintext)
