"""Every built-in protocol by name: the comparison protocols (``bench.protocol``) and each seed paper's own
recipe at its scales (``bench.paper_protocols``). Its own module, so neither of those imports the other's
registry: the paper protocols are built from ``Protocol``, and this is the one place that sees both."""
from __future__ import annotations

from bench.paper_protocols import PAPER_PROTOCOLS
from bench.protocol import PROTOCOLS, SCALES, Protocol, ProtocolError


def protocol_names() -> list[str]:
    """Every protocol name --protocol accepts: the comparison protocols, then one ``paper-<name>`` per paper."""
    return [*PROTOCOLS, *PAPER_PROTOCOLS]


def all_protocols() -> list[Protocol]:
    """Every built-in protocol object, the paper protocols at each scale included (captions look them up)."""
    return [*PROTOCOLS.values(), *(p for scales in PAPER_PROTOCOLS.values() for p in scales.values())]


def get_protocol(name: str, scale: str | None = None) -> Protocol:
    """A built-in protocol by name (a paper protocol at ``scale``, default ``cpu``); raises ProtocolError
    naming the choices."""
    if name in PROTOCOLS:
        if scale not in (None, ""):
            raise ProtocolError(f"--scale applies to the paper protocols ({', '.join(PAPER_PROTOCOLS)}), "
                                f"not to {name!r}; drop --scale")
        return PROTOCOLS[name]
    if name in PAPER_PROTOCOLS:
        scale = scale or "cpu"
        if scale not in SCALES:
            raise ProtocolError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
        return PAPER_PROTOCOLS[name][scale]
    raise ProtocolError(f"unknown protocol {name!r}; choose one of: {', '.join(protocol_names())}")
