"""The LAC's access side: subscribers reach kl2tp-lac over PPPoE (RFC 2516)."""
