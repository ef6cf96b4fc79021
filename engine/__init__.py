"""Dangan engine: compiles YAML definitions into frozen specs and runs them; knows no domain."""
