"""The forwarding path's native part (``_rtpfast.c``: SRTP unprotect, RTP parse, the
bandwidth estimator, the rewriter and the writer in C), compiled at install where a C
compiler is present. This process uses it unless told not to (setting
``native_forwarding``: the pure-Python path, for comparison or as a fallback); without
it, or told not to, the same rules run in Python."""

from __future__ import annotations

from types import ModuleType

try:
    from vteller.media import _rtpfast as _built
except ImportError:  # not compiled where it was installed
    _built = None  # type: ignore[assignment]

_use = True


def built() -> bool:
    return _built is not None


def use(on: bool) -> None:
    """Whether forwarders made from now on use the native part (where built)."""
    global _use
    _use = on


def rtpfast() -> ModuleType | None:
    """The native module, or None: not built, or not to be used."""
    return _built if _use else None


def describe() -> str:
    """What forwards packets in this process, for the start-up banner."""
    if _built is None:
        return "pure Python (the native part was not built: no C compiler at install)"
    return "native (media/_rtpfast.c)" if _use else "pure Python (native_forwarding off)"
