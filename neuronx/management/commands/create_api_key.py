from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from neuronx.tenancy import TenancyError, api_key_create, scopes_parse, tenant_get_by_slug


class Command(BaseCommand):
    help = "Issue an API key for a tenant. The key is printed once, as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--scopes", default=None, help="Comma-separated; default: all scopes.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_slug(slug=options["tenant_slug"])
            issued = api_key_create(
                tenant=tenant, name=options["name"], scopes=scopes_parse(options["scopes"])
            )
        except TenancyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"API key {issued.api_key.id} for {tenant.slug} with scopes "
            f"{','.join(issued.api_key.scopes)}. It will not be shown again:"
        )
        self.stdout.write(issued.plaintext)
