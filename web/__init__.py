"""Dangan web app: thin Litestar controllers over engine services, Jinja2 + htmx pages."""
