"""Standard Webhooks signing (https://www.standardwebhooks.com/) with the `standardwebhooks` library."""

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def secret_generate() -> str:
    """A new signing secret: `whsec_` and 32 random bytes in base64, as the spec defines."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_headers(
    *, message_id: str, timestamp: datetime, body: str, secrets_: list[str]
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for one attempt.

    Each secret gives one `v1,<base64>` signature, space separated, so a receiver that holds
    either the new or the previous secret during a rotation verifies the message.
    """
    signatures = [
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets_
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
