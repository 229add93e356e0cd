import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework.renderers import JSONRenderer


@dataclass(frozen=True)
class JsonText:
    """A document already written as JSON text, compact, as `JsonRenderer` writes documents
    (`ensure_ascii=False`), but for U+2028 and U+2029, which the renderer escapes."""

    text: str


class JsonRenderer(JSONRenderer):
    """Compact UTF-8 JSON; problem documents keep their own `application/problem+json` type."""

    ensure_ascii = False
    compact = True

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, JsonText):
            if self.get_indent(accepted_media_type or "", renderer_context or {}) is None:
                # What `JSONRenderer.render` does after `json.dumps`.
                text = data.text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
                return text.encode()
            data = json.loads(data.text)
        return super().render(data, accepted_media_type, renderer_context)
