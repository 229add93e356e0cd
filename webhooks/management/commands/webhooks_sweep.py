"""Run the webhook outbox sweep once (celery beat runs it every minute in production).

With no broker configured (development), tasks run in-process: the first attempt of a delivery
is made right after its event commits, and retries wait for this command.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand

from webhooks.dispatch import outbox_sweep


class Command(BaseCommand):
    help = "Dispatch missed events and send the webhook deliveries that are due."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(outbox_sweep()))
