"""Providers: where dynamic configuration comes from."""
