"""The app's REST API, one blueprint per resource."""

from flask_openapi3 import OpenAPI

from . import actions, auth, feeds, notifications, posts, profiles, push, search
from . import admin_backfills, admin_ops  # /api/admin/backfills, /api/admin/queues, /api/admin/status


def register_api(app: OpenAPI) -> None:
    app.url_map.converters["aturi"] = posts.AtUriConverter
    for module in (auth, feeds, posts, profiles, search, actions, push, notifications):
        _merge_shared_paths(app, module.api)
        app.register_api(module.api)
    for module in (admin_backfills, admin_ops):
        app.register_api(module.api)


def _merge_shared_paths(app: OpenAPI, api) -> None:
    """Keep every method of a path two blueprints share (GET and DELETE /api/post/{uri}).

    flask-openapi3 replaces a path's whole entry when a second blueprint documents it.
    """
    for path, item in api.paths.items():
        if path in app.paths:
            api.paths[path] = app.paths[path].model_copy(
                update={name: getattr(item, name) for name in item.model_fields_set})
