from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from gtm_api.models import RoutingRule
from gtm_api.services.routing import routing_config_install
from neuronx.models import Tenant
from neuronx.tenancy import api_key_create

# Grade A leads go to the enterprise team (least loaded, capped); everything else, and any
# overflow, is shared round-robin in the inbound team. docs/routing.md explains the format.
DEMO_ROUTING: dict[str, Any] = {
    "teams": [
        {
            "key": "inbound",
            "name": "Inbound sales",
            "reps": [
                {"key": "ada", "name": "Ada Lovelace", "email": "ada@example.com"},
                {"key": "grace", "name": "Grace Hopper", "email": "grace@example.com"},
            ],
        },
        {
            "key": "enterprise",
            "name": "Enterprise sales",
            "reps": [
                {"key": "alan", "name": "Alan Turing", "email": "alan@example.com", "capacity": 50},
                {
                    "key": "katherine",
                    "name": "Katherine Johnson",
                    "email": "katherine@example.com",
                    "capacity": 50,
                },
            ],
        },
    ],
    "rules": [
        {
            "name": "enterprise-grade-a",
            "when": [{"field": "grade", "op": "eq", "value": "A"}],
            "team": "enterprise",
            "strategy": "least_loaded",
        },
        {"name": "catch-all", "when": [], "team": "inbound", "strategy": "round_robin"},
    ],
    "fallback": {"team": "inbound", "strategy": "round_robin"},
}


class Command(BaseCommand):
    help = "Create or reuse a demo tenant and print a new full-scope API key as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default="demo", help="Tenant slug (default: demo).")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        tenant, created = Tenant.objects.get_or_create(
            slug=options["tenant"], defaults={"name": f"{options['tenant'].title()} Inc."}
        )
        # A reused tenant keeps whatever routing it has (an operator may have changed it).
        if not RoutingRule.objects.filter(tenant=tenant).exists():
            routing_config_install(tenant=tenant, config=DEMO_ROUTING)
            self.stdout.write(
                "Installed demo routing: grade A → team enterprise (least_loaded), everything "
                "else → team inbound (round_robin)."
            )
        issued = api_key_create(tenant=tenant, name="seed_demo")
        self.stdout.write(
            f"{'Created' if created else 'Reusing'} tenant {tenant.slug} ({tenant.id}). "
            "A new full-scope API key follows; it will not be shown again:"
        )
        self.stdout.write(issued.plaintext)
