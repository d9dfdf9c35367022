"""TCP middlewares: checks a routed connection passes before reaching its service."""
