"""Lead routing: a tenant's teams, reps and rules, and the `route` action that applies them.

The configuration format, the strategies and the `install_routing` command are described in
docs/routing.md. Concurrency: every strategy reads and advances its state (`Team.rr_position`,
`Rep.current_weight`, `Rep.load`) only while holding the row locks of the teams involved, taken
after the lead's own lock and in primary-key order, so concurrent routes serialise per team,
stay fair, and cannot deadlock one another; an install takes the same team locks.
"""

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.db import transaction
from django.db.models import F
from rest_framework import serializers

from gtm_api.models import Assignment, Lead, Qualification, Rep, RoutingRule, RoutingStrategy, Team
from gtm_api.serializers import LeadOutput
from gtm_api.services.conditions import (
    ConditionInvalid,
    condition_describe,
    condition_matches,
    condition_validate,
    lead_facts,
)
from gtm_api.services.lifecycle import lead_lock_for, lead_transition
from neuronx import errors
from neuronx.context import Actor
from neuronx.models import Tenant
from usage.services import usage_record
from webhooks.services import event_publish

FALLBACK = "fallback"  # the `rule` an assignment made by the fallback shows
STRATEGIES = tuple(RoutingStrategy.values)
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_WEIGHT = 32767  # Rep.weight is a PositiveSmallIntegerField
_MAX_CAPACITY = 2**31 - 1
_PLAN_ATTEMPTS = 3


class RoutingConfigInvalid(ValueError):
    """A routing configuration is not valid; the message starts with the offending path."""


# -- configuration: validate -------------------------------------------------------------------


def _fail(path: str, message: str) -> NoReturn:
    raise RoutingConfigInvalid(f"{path}: {message}")


def _object(value: Any, path: str, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, f"must be an object, not {type(value).__name__}")
    unknown = sorted(set(value) - required - optional, key=str)
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(required - set(value))
    if missing:
        _fail(path, f"missing key(s) {', '.join(map(repr, missing))}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(path, f"must be a list, not {type(value).__name__}")
    return value


def _text(value: Any, path: str, *, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(path, "must be a non-empty string")
    if len(value) > max_length:
        _fail(path, f"must be at most {max_length} characters")
    return value.strip()


def _key(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        _fail(path, f"{value!r} is not a key (1–64 of A-Z a-z 0-9 _ -)")
    return value


def _int(value: Any, path: str, *, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        _fail(path, f"must be an integer from {minimum} to {maximum}, not {value!r}")
    return value


def _strategy(value: Any, path: str) -> str:
    if value not in STRATEGIES:
        _fail(path, f"unknown strategy {value!r}; use one of {', '.join(STRATEGIES)}")
    return str(value)


def _condition(value: Any, path: str) -> dict[str, Any]:
    try:
        condition = condition_validate(value)
    except ConditionInvalid as exc:
        _fail(path, str(exc))
    listed: list[Any] = condition["value"] if condition["op"] in {"in", "not_in"} else []
    if any(isinstance(item, list | dict) for item in listed):
        _fail(path, "list values must be strings, numbers, booleans or null")
    return dict(condition)


def _rep(value: Any, path: str) -> dict[str, Any]:
    rep = _object(
        value, path, required={"key", "name"}, optional={"email", "weight", "capacity", "active"}
    )
    email = rep.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 254):
        _fail(f"{path}.email", f"{email!r} is not an email address")
    capacity = rep.get("capacity")
    active = rep.get("active", True)
    if not isinstance(active, bool):
        _fail(f"{path}.active", "must be true or false")
    return {
        "key": _key(rep["key"], f"{path}.key"),
        "name": _text(rep["name"], f"{path}.name", max_length=200),
        "email": (email or "").strip().lower(),
        "weight": _int(rep.get("weight", 1), f"{path}.weight", minimum=1, maximum=_MAX_WEIGHT),
        "capacity": None
        if capacity is None
        else _int(capacity, f"{path}.capacity", minimum=0, maximum=_MAX_CAPACITY),
        "active": active,
    }


def routing_config_validate(config: Any) -> dict[str, Any]:
    """Check a routing configuration and return it normalised (defaults filled in).

    Raises `RoutingConfigInvalid` naming the first problem by its path, e.g.
    `rules[1].team: unknown team 'sales'`. An empty `rules` list without a fallback is valid
    and switches routing off (routes answer `routing_not_configured`).
    """
    root = _object(config, "config", required={"teams", "rules"}, optional={"fallback"})
    teams: list[dict[str, Any]] = []
    for i, raw_team in enumerate(_list(root["teams"], "teams")):
        path = f"teams[{i}]"
        team = _object(raw_team, path, required={"key", "name", "reps"}, optional=set())
        key = _key(team["key"], f"{path}.key")
        if any(t["key"] == key for t in teams):
            _fail(f"{path}.key", f"duplicate team key {key!r}")
        reps: list[dict[str, Any]] = []
        for j, raw_rep in enumerate(_list(team["reps"], f"{path}.reps")):
            rep = _rep(raw_rep, f"{path}.reps[{j}]")
            if any(r["key"] == rep["key"] for r in reps):
                _fail(f"{path}.reps[{j}].key", f"duplicate rep key {rep['key']!r} in team {key!r}")
            reps.append(rep)
        if not reps:
            _fail(f"{path}.reps", "a team needs at least one rep")
        teams.append(
            {"key": key, "name": _text(team["name"], f"{path}.name", max_length=200), "reps": reps}
        )
    team_keys = {t["key"] for t in teams}

    def team_ref(value: Any, path: str) -> str:
        if value not in team_keys:
            _fail(path, f"unknown team {value!r}; define it under `teams`")
        return str(value)

    rules: list[dict[str, Any]] = []
    for i, raw_rule in enumerate(_list(root["rules"], "rules")):
        path = f"rules[{i}]"
        rule = _object(
            raw_rule, path, required={"name", "when", "team", "strategy"}, optional=set()
        )
        name = _text(rule["name"], f"{path}.name", max_length=100)
        if name == FALLBACK:
            _fail(f"{path}.name", f"{FALLBACK!r} is reserved for the fallback")
        if any(r["name"] == name for r in rules):
            _fail(f"{path}.name", f"duplicate rule name {name!r}")
        when = [
            _condition(c, f"{path}.when[{k}]")
            for k, c in enumerate(_list(rule["when"], f"{path}.when"))
        ]
        rules.append(
            {
                "name": name,
                "when": when,
                "team": team_ref(rule["team"], f"{path}.team"),
                "strategy": _strategy(rule["strategy"], f"{path}.strategy"),
            }
        )
    fallback = None
    if root.get("fallback") is not None:
        raw = _object(root["fallback"], "fallback", required={"team", "strategy"}, optional=set())
        fallback = {
            "team": team_ref(raw["team"], "fallback.team"),
            "strategy": _strategy(raw["strategy"], "fallback.strategy"),
        }
    return {"teams": teams, "rules": rules, "fallback": fallback}


# -- configuration: install and read -----------------------------------------------------------


@dataclass
class RoutingInstallResult:
    teams: int = 0
    rules: int = 0
    reps_created: int = 0
    reps_updated: int = 0
    reps_deactivated: int = 0
    reps_deleted: int = 0
    teams_deleted: int = 0
    kept_teams: list[str] = field(default_factory=list)


def _retire(rep: Rep, *, assigned: set[int], result: RoutingInstallResult) -> bool:
    """Remove a rep that left the configuration; True when the row is gone."""
    if rep.pk in assigned:  # Assignment.rep is PROTECT: history keeps pointing at the rep
        if rep.is_active:
            rep.is_active = False
            rep.save(update_fields=["is_active"])
            result.reps_deactivated += 1
        return False
    rep.delete()
    result.reps_deleted += 1
    return True


@transaction.atomic
def routing_config_install(*, tenant: Tenant, config: Any) -> RoutingInstallResult:
    """Replace the tenant's teams, reps and rules with `config` (validated first).

    Guarantees: all or nothing. Teams and reps are matched by key (rep key within its team): a
    rep that stays keeps its row and `load`; a removed rep that owns assignments is deactivated
    (its history stays), any other is deleted; a removed team goes once it has no reps left.
    Smooth weighted round-robin state restarts (weights may have changed). Waits for in-flight
    routes of the tenant's teams, so no route sees a half-installed configuration.
    """
    valid = routing_config_validate(config)
    result = RoutingInstallResult(teams=len(valid["teams"]), rules=len(valid["rules"]))
    existing = {
        team.key: team
        for team in Team.objects.select_for_update().filter(tenant=tenant).order_by("pk")
    }
    assigned = set(
        Assignment.objects.filter(tenant=tenant).values_list("rep_id", flat=True).distinct()
    )
    RoutingRule.objects.filter(tenant=tenant).delete()
    teams: dict[str, Team] = {}
    for team_config in valid["teams"]:
        team = existing.pop(team_config["key"], None)
        if team is None:
            team = Team.objects.create(
                tenant=tenant, key=team_config["key"], name=team_config["name"]
            )
        elif team.name != team_config["name"]:
            team.name = team_config["name"]
            team.save(update_fields=["name"])
        teams[team.key] = team
        current = {rep.key: rep for rep in Rep.objects.filter(team=team)}
        for rep_config in team_config["reps"]:
            values = {
                "name": rep_config["name"],
                "email": rep_config["email"],
                "weight": rep_config["weight"],
                "capacity": rep_config["capacity"],
                "is_active": rep_config["active"],
                "current_weight": 0,
            }
            rep = current.pop(rep_config["key"], None)
            if rep is None:
                Rep.objects.create(tenant=tenant, team=team, key=rep_config["key"], **values)
                result.reps_created += 1
            else:
                Rep.objects.filter(pk=rep.pk).update(**values)
                result.reps_updated += 1
        for rep in current.values():
            _retire(rep, assigned=assigned, result=result)
    for team in existing.values():
        remaining = [
            rep
            for rep in Rep.objects.filter(team=team)
            if not _retire(rep, assigned=assigned, result=result)
        ]
        if remaining:
            result.kept_teams.append(team.key)
        else:
            team.delete()
            result.teams_deleted += 1
    rules = [
        RoutingRule(
            tenant=tenant,
            position=position,
            name=rule["name"],
            conditions=rule["when"],
            team=teams[rule["team"]],
            strategy=rule["strategy"],
        )
        for position, rule in enumerate(valid["rules"])
    ]
    if valid["fallback"] is not None:
        rules.append(
            RoutingRule(
                tenant=tenant,
                position=len(rules),
                name=FALLBACK,
                conditions=[],
                team=teams[valid["fallback"]["team"]],
                strategy=valid["fallback"]["strategy"],
                is_fallback=True,
            )
        )
    RoutingRule.objects.bulk_create(rules)
    return result


def routing_config_get(*, tenant: Tenant) -> dict[str, Any]:
    """The tenant's routing configuration in the install format (re-installing it is a no-op).

    Reps kept only because they own assignments show as `"active": false`.
    """
    teams = []
    for team in Team.objects.filter(tenant=tenant).prefetch_related("reps").order_by("key"):
        reps = []
        for rep in sorted(team.reps.all(), key=lambda r: r.key):
            entry: dict[str, Any] = {"key": rep.key, "name": rep.name}
            if rep.email:
                entry["email"] = rep.email
            entry.update(weight=rep.weight, capacity=rep.capacity, active=rep.is_active)
            reps.append(entry)
        teams.append({"key": team.key, "name": team.name, "reps": reps})
    config: dict[str, Any] = {"teams": teams, "rules": [], "fallback": None}
    for rule in RoutingRule.objects.filter(tenant=tenant).select_related("team"):
        if rule.is_fallback:
            config["fallback"] = {"team": rule.team.key, "strategy": rule.strategy}
        else:
            config["rules"].append(
                {
                    "name": rule.name,
                    "when": rule.conditions,
                    "team": rule.team.key,
                    "strategy": rule.strategy,
                }
            )
    return config


# -- routing -----------------------------------------------------------------------------------


@dataclass
class _Plan:
    rule: RoutingRule | None  # the first ordinary rule that matched, if any
    fallback: RoutingRule | None
    trace: list[str]

    @property
    def team_ids(self) -> set[int]:
        return {r.team_id for r in (self.rule, self.fallback) if r is not None}


def _plan(*, lead: Lead, facts: dict[str, Any]) -> _Plan:
    rules = list(
        RoutingRule.objects.filter(tenant_id=lead.tenant_id)
        .select_related("team")
        .order_by("position")
    )
    if not rules:
        raise errors.RoutingNotConfigured(
            "The tenant has no routing rules and no fallback; the internal team installs them "
            "with `manage.py install_routing`."
        )
    fallback = next((rule for rule in rules if rule.is_fallback), None)
    trace: list[str] = []
    for rule in rules:
        if rule.is_fallback:
            continue
        unmet = next((c for c in rule.conditions if not condition_matches(c, facts)), None)
        if unmet is None:
            trace.append(f"rule '{rule.name}' matched")
            return _Plan(rule=rule, fallback=fallback, trace=trace)
        trace.append(f"rule '{rule.name}' skipped: {condition_describe(unmet)} not met")
    if fallback is None:
        reason = "; ".join([*trace, "no rule matched and there is no fallback"])
        raise errors.RoutingNotConfigured(
            f"No routing rule matches lead {lead.id}: {reason}.", reason=reason
        )
    trace.append("no rule matched")
    return _Plan(rule=None, fallback=fallback, trace=trace)


def _lock_teams(*, tenant: Tenant, team_ids: set[int], locked: dict[int, Team]) -> None:
    missing = team_ids - locked.keys()
    # Primary-key order: two transactions locking overlapping team sets cannot deadlock.
    for team in (
        Team.objects.select_for_update().filter(tenant=tenant, pk__in=missing).order_by("pk")
    ):
        locked[team.pk] = team


def _available(rep: Rep) -> bool:
    return rep.is_active and (rep.capacity is None or rep.load < rep.capacity)


def _pick(*, team: Team, strategy: str) -> tuple[Rep | None, str]:
    """Choose a rep of the locked `team` with `strategy` and advance its state."""
    reps = list(Rep.objects.filter(team=team).order_by("key"))
    active = [rep for rep in reps if rep.is_active]
    available = [rep for rep in active if _available(rep)]
    full = [rep.key for rep in active if not _available(rep)]
    if not available:
        inactive = len(reps) - len(active)
        return None, (
            f"no available rep ({len(active)} active"
            + (f", at capacity: {', '.join(full)}" if full else "")
            + (f"; {inactive} inactive" if inactive else "")
            + ")"
        )
    skipped = f"; at capacity: {', '.join(full)}" if full else ""
    if strategy == RoutingStrategy.ROUND_ROBIN:
        start = team.rr_position % len(active)
        index = next(
            (start + step) % len(active)
            for step in range(len(active))
            if _available(active[(start + step) % len(active)])
        )
        chosen = active[index]
        team.rr_position = (index + 1) % len(active)
        team.save(update_fields=["rr_position"])
        note = f"turn {index + 1} of {len(active)} active reps{skipped}"
    elif strategy == RoutingStrategy.WEIGHTED:
        # Smooth weighted round-robin (nginx): everyone gains its weight, the leader pays the total.
        total = sum(rep.weight for rep in available)
        for rep in available:
            rep.current_weight += rep.weight
        chosen = max(available, key=lambda rep: rep.current_weight)  # first max: ties by key
        chosen.current_weight -= total
        Rep.objects.bulk_update(available, ["current_weight"])
        note = f"weight {chosen.weight} of {total} across {len(available)} available reps{skipped}"
    else:
        chosen = min(available, key=lambda rep: (rep.load, rep.key))
        limit = "unlimited" if chosen.capacity is None else str(chosen.capacity)
        note = f"load {chosen.load}/{limit}, the lowest of {len(available)} available reps{skipped}"
    return chosen, f"{strategy} → {chosen.key} ({note})"


def assignment_release(*, assignment: Assignment) -> None:
    """Give back the load `assignment` put on its rep: on re-route, or when the lead is handed
    off. One atomic `UPDATE` that never goes below zero; it only frees capacity, so it is safe
    without the team lock (a concurrent route at worst sees the rep as still full)."""
    Rep.objects.filter(pk=assignment.rep_id, load__gt=0).update(load=F("load") - 1)


def _assignment_data(assignment: Assignment, previous: Assignment | None) -> dict[str, Any]:
    return {
        "id": assignment.id,
        "owner": assignment.owner,
        "team": assignment.team,
        "rule": assignment.rule,
        "strategy": assignment.strategy,
        "reason": assignment.reason,
        "routed_at": serializers.DateTimeField().to_representation(assignment.created_at),
        "previous_owner": previous.owner if previous else None,
    }


@transaction.atomic
def lead_route(*, actor: Actor, lead_id: str) -> Assignment:
    """Assign the tenant's qualified (or already routed) lead to a rep and mark it `routed`.

    Rules are evaluated in order against the lead's facts (with the latest qualification's
    score and grade); the first match wins, else the fallback. A matched team with no available
    rep (all inactive or at capacity) overflows to the fallback; when that cannot take the lead
    either: `no_rep_available`. No rules (or no match and no fallback): `routing_not_configured`.
    Re-routing gives back the previous rep's load first. Writes an `Assignment` with a
    human-readable trace in `reason`, one `lead.routed` usage event and a `lead.routed` event,
    all in one transaction. Fair under concurrency (team row locks). Consent: none required.
    """
    lead = lead_lock_for(actor=actor, lead_id=lead_id, action="route")
    qualification = (
        Qualification.objects.filter(tenant=actor.tenant, lead=lead)
        .order_by("-created_at", "-id")
        .first()
    )
    facts = lead_facts(
        lead,
        score=qualification.score if qualification else None,
        grade=qualification.grade if qualification else None,
    )
    previous = (
        Assignment.objects.filter(tenant=actor.tenant, lead=lead)
        .select_related("rep")
        .order_by("-created_at", "-id")
        .first()
    )
    locked: dict[int, Team] = {}
    for _attempt in range(_PLAN_ATTEMPTS):
        plan = _plan(lead=lead, facts=facts)
        needed = plan.team_ids | ({previous.rep.team_id} if previous else set())
        _lock_teams(tenant=actor.tenant, team_ids=needed, locked=locked)
        # A team vanishes only when an install replaced it while we waited: plan again.
        if needed <= locked.keys():
            break
    else:
        raise errors.ServiceUnavailable("The routing configuration changed while routing; retry.")

    if previous is not None:
        assignment_release(assignment=previous)
    trace, rep, used = plan.trace, None, None
    if plan.rule is not None:
        team = locked[plan.rule.team_id]
        rep, note = _pick(team=team, strategy=plan.rule.strategy)
        trace[-1] += f" → team {team.key}, {note}"
        used = plan.rule
    if rep is None and plan.fallback is not None:
        team = locked[plan.fallback.team_id]
        rep, note = _pick(team=team, strategy=plan.fallback.strategy)
        trace.append(f"{FALLBACK} → team {team.key}, {note}")
        used = plan.fallback
    reason = "; ".join(trace)
    if rep is None or used is None:
        raise errors.NoRepAvailable(f"No rep can take lead {lead.id}: {reason}.", reason=reason)
    if previous is not None:
        reason += f"; previous owner {previous.owner} released"

    Rep.objects.filter(pk=rep.pk).update(load=F("load") + 1)
    assignment = Assignment.objects.create(
        tenant=actor.tenant,
        lead=lead,
        rep=rep,
        owner=rep.key,
        team=team.key,
        rule=FALLBACK if used.is_fallback else used.name,
        strategy=used.strategy,
        reason=reason,
    )
    lead.owner = rep.key
    lead.save(update_fields=["owner", "updated_at"])
    lead_transition(actor=actor, lead=lead, to_stage="routed", cause="route")
    usage_record(actor=actor, dimension="lead.routed", quantity=1)
    event_publish(
        actor=actor,
        type="lead.routed",
        data={"lead": LeadOutput(lead).data, "assignment": _assignment_data(assignment, previous)},
    )
    return assignment
