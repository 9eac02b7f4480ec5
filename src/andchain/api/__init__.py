"""The HTTP API: parse, authorise, call a domain function, render. No business rules here."""

from andchain.api.app import create_app

__all__ = ["create_app"]
