"""What text may reach storage: no NUL (PostgreSQL refuses it in text) and nothing
that is not UTF-8 (lone surrogates). Checked at the edge, answered with 400."""

from __future__ import annotations

from pydantic import BaseModel


def storable(*texts: str) -> bool:
    try:
        return all("\x00" not in t and t.encode("utf-8") is not None for t in texts)
    except UnicodeEncodeError:
        return False


def clean_model(body: BaseModel) -> bool:
    """Every top-level text field of a request body is storable."""
    return storable(*(v for v in body.model_dump().values() if isinstance(v, str)))
