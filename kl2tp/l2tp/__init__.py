"""Sans-IO L2TPv2 (RFC 2661): codec, reliable delivery, tunnel and session state machines."""
