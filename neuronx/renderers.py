from rest_framework.renderers import JSONRenderer


class JsonRenderer(JSONRenderer):
    """Compact UTF-8 JSON; problem documents keep their own `application/problem+json` type."""

    ensure_ascii = False
    compact = True
