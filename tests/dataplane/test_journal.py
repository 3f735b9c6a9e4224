"""The stale-object journal: what it records, what it replays, who may hold it."""

from __future__ import annotations

import pathlib

import pytest

from kl2tp.dataplane.base import DataPlaneError
from kl2tp.dataplane.kernel import Journal, LinkRecord, TunnelRecord

T1 = TunnelRecord(1, 11, ("192.0.2.1", 1701), ("192.0.2.2", 1701))
T2 = TunnelRecord(2, 22, ("192.0.2.1", 1701), ("198.51.100.7", 4500))


def test_replay_keeps_created_and_not_removed(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path), "lns")
    journal.add_tunnel(T1)
    journal.add_tunnel(T2)
    journal.add_link(LinkRecord(7, "l2tp0"))
    journal.add_link(LinkRecord(8, "l2tp1"))
    journal.remove_tunnel(1)
    journal.remove_link(7)
    tunnels, links = journal.read()
    assert tunnels == {2: T2}
    assert links == {8: LinkRecord(8, "l2tp1")}
    journal.close(remove=False)
    # A killed instance leaves the file; the next one reads the same objects.
    again = Journal(str(tmp_path), "lns")
    assert again.read() == (tunnels, links)
    again.close(remove=True)
    assert not (tmp_path / "lns.journal").exists()


def test_second_live_holder_is_refused(tmp_path: pathlib.Path) -> None:
    first = Journal(str(tmp_path), "lns")
    with pytest.raises(DataPlaneError, match="another kl2tp with instance name 'lns'"):
        Journal(str(tmp_path), "lns")
    other = Journal(str(tmp_path), "lac")  # another instance name is another journal
    other.close(remove=True)
    first.close(remove=True)


def test_damaged_lines_are_skipped(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path), "lns")
    journal.add_tunnel(T1)
    with open(tmp_path / "lns.journal", "a") as f:
        f.write('{"op":"+tunnel","id":\n')  # a write cut short
    journal.add_link(LinkRecord(3, "l2tp3"))
    assert journal.read() == ({1: T1}, {3: LinkRecord(3, "l2tp3")})
    journal.close(remove=True)


def test_rewrite_compacts_to_the_live_objects(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path), "lns")
    for i in range(600):
        journal.add_link(LinkRecord(i, f"l2tp{i}"))
        journal.remove_link(i)
    assert journal.needs_compaction()
    journal.rewrite([T2], [LinkRecord(5, "l2tp5")])
    assert not journal.needs_compaction()
    assert len((tmp_path / "lns.journal").read_text().splitlines()) == 2
    assert journal.read() == ({2: T2}, {5: LinkRecord(5, "l2tp5")})
    journal.close(remove=True)
