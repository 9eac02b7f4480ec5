"""Compliance: the checks and bank messages (ISO 20022) that regulators and counterparts require."""
