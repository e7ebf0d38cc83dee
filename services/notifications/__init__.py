"""Members' notifications: what the REST API lists, counts and marks read (``queries``), their
per-member push preferences (``preferences``), and how ingest creates them."""
