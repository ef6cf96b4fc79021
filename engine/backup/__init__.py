"""Backups and restores: one archive file holding a consistent snapshot of the database (attachments included, they
live in it), the definitions directory, and a manifest with counts, checksums and versions; and the schedule.

`service` takes, verifies and restores archives; `schedule` runs them from a server; `archive` and `manifest` are the
file format; `sqlite` and `postgres` the two databases' ways of copying themselves."""
