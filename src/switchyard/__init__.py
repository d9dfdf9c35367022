"""Switchyard: a TCP edge router that speaks Traefik's TCP configuration."""

__version__ = "0.1.0"
