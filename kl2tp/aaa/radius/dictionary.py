"""The RADIUS dictionary shipped inside the package.

The files in ``dictionaries/`` are FreeRADIUS's per-RFC dictionaries (CC-BY 4.0, The FreeRADIUS
Server project and contributors; each keeps its header): RFC 2865, 2866, 2867, 2868, 2869,
3162, 3576/5176 and the Microsoft and Cisco vendor dictionaries. pyrad reads them one by one
(FreeRADIUS's master file ``$INCLUDE``s formats pyrad does not know). The one attribute pyrad
cannot type, ``Vendor-Specific`` (``vsa``: pyrad decodes vendor attributes itself), is
commented out in our copy of ``dictionary.rfc2865``.
"""

from __future__ import annotations

import functools
from importlib import resources

from pyrad.dictionary import Dictionary

__all__ = ["DICTIONARY_FILES", "load_dictionary"]

DICTIONARY_FILES = (
    "dictionary.rfc2865",
    "dictionary.rfc2866",
    "dictionary.rfc2867",
    "dictionary.rfc2868",
    "dictionary.rfc2869",
    "dictionary.rfc3162",
    "dictionary.rfc3576",
    "dictionary.rfc5176",
    "dictionary.microsoft",
    "dictionary.cisco",
)
"""Loaded in this order: later files add values to attributes the earlier ones define."""


@functools.cache
def load_dictionary() -> Dictionary:
    """The shipped dictionary (parsed once per process: blocking file reads, ~10 ms)."""
    folder = resources.files("kl2tp.aaa.radius") / "dictionaries"
    with resources.as_file(folder) as path:
        return Dictionary(*(str(path / name) for name in DICTIONARY_FILES))
