"""HTTP controllers; each handler parses input, calls one engine service and renders."""
