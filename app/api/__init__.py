"""The app's REST API, one blueprint per resource."""

from flask_openapi3 import OpenAPI

from . import actions, auth, feeds, posts, profiles, search


def register_api(app: OpenAPI) -> None:
    for module in (auth, feeds, posts, profiles, search, actions):
        app.register_api(module.api)
