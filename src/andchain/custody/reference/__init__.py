"""The bundled reference custodian: a separate service standing in for a third party (docs/custody.md)."""
