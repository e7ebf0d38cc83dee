"""The app's REST API, one blueprint per resource."""

from flask_openapi3 import OpenAPI

from . import posts


def register_api(app: OpenAPI) -> None:
    for module in (posts,):
        app.register_api(module.api)
