"""What the CI fuzz run needs to exist, made through the public API as an integrator would.

Appointments and payments need a routed lead with consent; a fuzzer cannot build one from random
data. This makes a few (a complete business lead with every consent granted, qualified, routed)
and a webhook delivery, and prints shell `export` lines naming them, for `tests/fuzz/hooks.py`:

    FUZZ_ENV=$(python tests/fuzz/prepare.py http://127.0.0.1:8000 "$KEY") && eval "$FUZZ_ENV"

Appointments and payments get separate leads, so a payment (which moves its lead to
`payment_pending`) never makes an appointment an invalid transition.
"""

import argparse
import uuid
from datetime import UTC, datetime, timedelta

import httpx

SCOPES = ("contact.email", "contact.sms", "contact.phone", "data.profiling", "payment.processing")
LEADS_PER_USE = 3


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> dict[str, object]:
    response = client.post(path, json=body, headers={"Idempotency-Key": f"prepare-{uuid.uuid4()}"})
    if response.status_code not in (200, 201, 202):
        raise SystemExit(f"POST {path}: {response.status_code} {response.text}")
    result: dict[str, object] = response.json()
    return result


def routed_lead(client: httpx.Client) -> str:
    captured_at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    lead = _post(
        client,
        "/v1/leads",
        {
            "email": f"fuzz-{uuid.uuid4().hex}@analytical-engines.com",
            "phone": "+442079460958",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines Ltd",
            "job_title": "VP Engineering",
            "country": "GB",
            "source": "fuzz",
            "consents": [
                {"scope": scope, "granted": True, "captured_at": captured_at, "source": "fuzz"}
                for scope in SCOPES
            ],
        },
    )
    lead_id = str(lead["id"])
    _post(client, f"/v1/leads/{lead_id}/qualify", {})
    routed = _post(client, f"/v1/leads/{lead_id}/route", {})
    if routed["stage"] != "routed":
        raise SystemExit(f"lead {lead_id} was not routed: {routed}")
    return lead_id


def delivery(client: httpx.Client) -> str:
    """A webhook delivery (`subscription/delivery`): a subscription's test ping. Its URL is a
    public address literal and no worker runs in the fuzz run, so nothing is ever sent."""
    subscription = _post(
        client,
        "/v1/webhook-subscriptions",
        {"url": "https://93.184.215.14/fuzz/prepare", "event_types": ["*"]},
    )
    ping = _post(client, f"/v1/webhook-subscriptions/{subscription['id']}/test", {})
    return f"{subscription['id']}/{ping['id']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30) as client:
        for variable in ("FUZZ_APPOINTMENT_LEADS", "FUZZ_PAYMENT_LEADS"):
            leads = [routed_lead(client) for _ in range(LEADS_PER_USE)]
            print(f"export {variable}={','.join(leads)}")
        print(f"export FUZZ_DELIVERY={delivery(client)}")


if __name__ == "__main__":
    main()
