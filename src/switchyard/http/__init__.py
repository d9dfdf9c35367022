"""The HTTP side: routers, services and the server that runs them on shared entry points."""
