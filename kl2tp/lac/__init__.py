"""The LAC's own logic: which LNS serves a subscriber (static rules or RADIUS), and the trio
driver that turns that choice into a tunnel."""
