"""Archive packages: records, child records, history and attachments carried signed between installations."""
