"""Profiles endpoints of the app API."""

from flask_openapi3 import APIBlueprint, Tag

api = APIBlueprint("profiles", __name__, url_prefix="/api", abp_tags=[Tag(name="profiles")])
