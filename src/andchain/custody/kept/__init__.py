"""Custody of assets whose keys are kept here: the reference custodian service runs it in its own
process and database, and the `self` adapter runs it inside andchain with the bank's own keys."""
