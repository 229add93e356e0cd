import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gtm_api.services.routing import (
    RoutingConfigInvalid,
    routing_config_get,
    routing_config_install,
)
from neuronx.config_files import config_file_load
from neuronx.tenancy import TenancyError, tenant_get_by_slug


class Command(BaseCommand):
    help = (
        "Install a tenant's routing configuration (teams, reps, rules, fallback) from a JSON or "
        "YAML file, replacing the current one; --show prints the current one as JSON. "
        "See docs/routing.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("path", nargs="?", help="A .json, .yaml or .yml file.")
        parser.add_argument(
            "--show", action="store_true", help="Print the current configuration as JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_slug(slug=options["tenant_slug"])
        except TenancyError as exc:
            raise CommandError(str(exc)) from exc
        if options["show"]:
            if options["path"]:
                raise CommandError("Give either a file to install or --show, not both.")
            self.stdout.write(json.dumps(routing_config_get(tenant=tenant), indent=2))
            return
        if not options["path"]:
            raise CommandError("Give the file to install (.json, .yaml or .yml), or --show.")
        path = Path(options["path"])
        try:
            result = routing_config_install(tenant=tenant, config=config_file_load(path))
        except RoutingConfigInvalid as exc:
            raise CommandError(f"{path} is not a valid routing configuration: {exc}.") from exc
        self.stdout.write(
            f"Installed routing for {tenant.slug}: {result.teams} team(s), {result.rules} "
            f"rule(s); reps: {result.reps_created} created, {result.reps_updated} updated, "
            f"{result.reps_deactivated} deactivated, {result.reps_deleted} deleted."
        )
        if result.kept_teams:
            self.stdout.write(
                "Kept (all reps inactive, they own assignments): "
                + ", ".join(result.kept_teams)
                + "."
            )
