"""Routing: the compiled tables the data plane consults per connection."""
