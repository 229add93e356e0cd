"""`manage.py install_scoring_model <tenant-slug> <path.json|.yaml>` and `--show`."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gtm_api.services.scoring import (
    ScoringModelInvalid,
    scoring_model_active,
    scoring_model_install,
    scoring_model_versions,
)
from neuronx.config_files import config_file_load
from neuronx.models import Tenant
from neuronx.tenancy import TenancyError, tenant_get_by_slug


class Command(BaseCommand):
    help = (
        "Validate a scoring model definition (JSON or YAML) and install "
        "it as the tenant's new active version; older versions are kept. With --show, print the "
        "tenant's active model (or the built-in default) as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("path", nargs="?", type=Path, help="Definition file (.json/.yaml).")
        parser.add_argument(
            "--show", action="store_true", help="Print the active model instead of installing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_slug(slug=options["tenant_slug"])
        except TenancyError as exc:
            raise CommandError(str(exc)) from exc
        path: Path | None = options["path"]
        if options["show"]:
            if path is not None:
                raise CommandError("Give either a definition file or --show, not both.")
            self._show(tenant)
            return
        if path is None:
            raise CommandError("Give the definition file to install (or --show).")
        definition = config_file_load(path)
        try:
            model = scoring_model_install(tenant=tenant, definition=definition)
        except ScoringModelInvalid as exc:
            raise CommandError(f"{path}: invalid scoring model at {exc}") from exc
        self.stdout.write(
            f"Installed scoring model {model.name} version {model.version} for {tenant.slug} "
            f"(model_version {model.name}-{model.version}); earlier versions are kept."
        )
        self.stdout.write(str(model.version))

    def _show(self, tenant: Tenant) -> None:
        active = scoring_model_active(tenant=tenant)
        installed = active.installed
        shown = {
            "tenant": tenant.slug,
            "model_version": active.model_version,
            "source": "default" if installed is None else "installed",
            "installed_at": installed.created_at.isoformat() if installed else None,
            "versions": [
                {"version": m.version, "name": m.name, "is_active": m.is_active}
                for m in scoring_model_versions(tenant=tenant)
            ],
            "definition": active.definition,
        }
        self.stdout.write(json.dumps(shown, indent=2, ensure_ascii=False))
