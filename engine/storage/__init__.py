"""Persistence: engine tables, migrations, and the JSON field expressions both databases index."""
