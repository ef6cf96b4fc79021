"""Certificates declared in YAML: issued from records, numbered, signed, printed as PDF and verified by anyone."""
