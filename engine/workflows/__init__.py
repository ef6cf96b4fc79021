"""Approval workflows declared in definitions/workflows/*.yaml: compiled specs, pure routing, a transactional service."""
