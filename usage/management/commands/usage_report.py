import csv
import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

from usage.selectors import PERIODS, usage_summary


def _moment(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    moment = parse_datetime(raw)
    if moment is None:
        day = parse_date(raw)
        if day is None:
            raise CommandError(f"--{name} {raw!r} is not an ISO date or datetime.")
        moment = datetime(day.year, day.month, day.day)
    return make_aware(moment) if is_naive(moment) else moment


class Command(BaseCommand):
    help = "Usage per tenant × dimension × period, as JSON or CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=None, help="Tenant slug (default: all).")
        parser.add_argument("--since", default=None, help="Inclusive ISO date/datetime (UTC).")
        parser.add_argument("--until", default=None, help="Exclusive ISO date/datetime (UTC).")
        parser.add_argument("--period", default="day", choices=sorted(PERIODS))
        parser.add_argument("--format", default="json", choices=["json", "csv"])

    def handle(self, *args: Any, **options: Any) -> None:
        rows = usage_summary(
            tenant_slug=options["tenant"],
            since=_moment(options["since"], "since"),
            until=_moment(options["until"], "until"),
            period=options["period"],
        )
        if options["format"] == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        fields = ["tenant", "dimension", "period", "period_start", "quantity", "events"]
        writer = csv.DictWriter(self.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
