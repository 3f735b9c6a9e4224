"""AAA: local users and address pools; RADIUS later."""
