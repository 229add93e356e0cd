from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from neuronx.models import ApiKey
from neuronx.tenancy import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its id (key_…) or prefix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key")

    def handle(self, *args: Any, **options: Any) -> None:
        ident = options["key"]
        api_key = (
            ApiKey.objects.filter(id=ident).first() or ApiKey.objects.filter(prefix=ident).first()
        )
        if api_key is None:
            raise CommandError(f"No API key {ident!r}.")
        api_key_revoke(api_key=api_key)
        self.stdout.write(f"Revoked {api_key.id}.")
