"""Scraping the metrics endpoint in tests: one GET over TCP, parsed with prometheus-client's
own parser into {(sample name, labels): value}."""

from __future__ import annotations

from collections.abc import Mapping

import trio
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Every sample of a scrape: (name, labels) -> value."""


async def fetch(addr: tuple[str, int], request: bytes) -> tuple[int, bytes]:
    """Send ``request`` to the server and read the reply to its end: (status, body)."""
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(request)
        reply = b""
        while chunk := await stream.receive_some(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


async def scrape(addr: tuple[str, int]) -> Samples:
    """GET /metrics and parse it (the parser rejects anything malformed)."""
    status, body = await fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    assert status == 200, body
    return parse(body.decode())


def parse(text: str) -> Samples:
    """Parse the text exposition format into samples."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError when the scrape lacks it)."""
    return samples[(name, frozenset(labels.items()))]


def by_label(samples: Samples, name: str, label: str, **fixed: str) -> dict[str, float]:
    """Values of ``name`` by one label, summed over the other labels (filtered by ``fixed``)."""
    out: dict[str, float] = {}
    for (sample, labels), v in samples.items():
        if sample != name:
            continue
        values = dict(labels)
        if any(values.get(k) != want for k, want in fixed.items()):
            continue
        key = values.get(label, "")
        out[key] = out.get(key, 0.0) + v
    return out


def nonzero(counts: Mapping[str, float]) -> dict[str, float]:
    """The entries that are not 0 (a gauge at 0 and an absent key say the same)."""
    return {k: v for k, v in counts.items() if v}
