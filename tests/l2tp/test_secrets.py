"""The tunnel secret never shows in a repr (settings end up in logs and tracebacks)."""

from kl2tp.l2tp.tunnel import TunnelConfig


def test_tunnel_config_repr_hides_the_secret() -> None:
    config = TunnelConfig(hostname="lns", secret=b"hunter2")
    assert "hunter2" not in repr(config)
    assert config.secret == b"hunter2"
