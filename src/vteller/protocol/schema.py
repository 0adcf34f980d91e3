"""Export the JSON Schemas of every message into ``signaling/schemas``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vteller.protocol.messages import CLIENT_MESSAGES, SERVER_MESSAGES


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema for every message (client and server)."""
    out: dict[str, dict[str, Any]] = {}
    for direction, table in (("client", CLIENT_MESSAGES), ("server", SERVER_MESSAGES)):
        for name, model in sorted(table.items()):
            schema = model.model_json_schema(mode="validation")
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["$id"] = f"vteller/signaling/v1/{direction}/{name}.json"
            if direction == "server":  # the server always sends `type`
                schema.setdefault("required", [])
                if "type" not in schema["required"]:
                    schema["required"].insert(0, "type")
            out[f"{direction}/{name}.json"] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(target: Path) -> list[Path]:
    written = []
    for rel, schema in all_schemas().items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(schema))
        written.append(path)
    return written
