"""trio drivers: UDP demux, tunnel and session tasks, control socket."""
