"""The wire contract: exported schemas match the models; transcripts replay against the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.helpers import SignalClient
from vteller.protocol import CLIENT_MESSAGES, SERVER_MESSAGES
from vteller.protocol.messages import ROLES_FOR
from vteller.protocol.schema import all_schemas, render

SIGNALING = Path(__file__).resolve().parents[1] / "signaling"
TRANSCRIPTS = sorted((SIGNALING / "transcripts").glob("*.json"))


def test_committed_schemas_match_models():
    schemas = all_schemas()
    committed = {p.relative_to(SIGNALING / "schemas").as_posix()
                 for p in (SIGNALING / "schemas").rglob("*.json")}
    assert committed == set(schemas), "run `uv run vteller protocol export`"
    for rel, schema in schemas.items():
        assert (SIGNALING / "schemas" / rel).read_text() == render(schema), (
            f"{rel} is stale: run `uv run vteller protocol export`")


def test_every_client_message_has_a_role_rule():
    assert set(ROLES_FOR) == set(CLIENT_MESSAGES)


def _validator(direction: str, mtype: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SIGNALING / "schemas" / direction / f"{mtype}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _match(expected: Any, actual: Any, captures: dict[str, Any], where: str) -> None:
    if isinstance(expected, str) and expected.startswith("$"):
        if expected in captures:
            assert actual == captures[expected], where
        else:
            captures[expected] = actual
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for k, v in expected.items():
            _match(v, actual.get(k), captures, f"{where}.{k}")
    else:
        assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


def _fill(value: Any, captures: dict[str, Any]) -> Any:
    if isinstance(value, str) and value in captures:
        return captures[value]
    if isinstance(value, dict):
        return {k: _fill(v, captures) for k, v in value.items()}
    return value


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript_replays(server, path):
    transcript = json.loads(path.read_text())
    server.add_staff("teller1")
    clients = {
        "customer": await SignalClient.open(server.ws_url),
        "teller": await SignalClient.open(server.ws_url, cookies=await server.login("teller1")),
    }
    captures: dict[str, Any] = {
        "$CUSTOMER_TOKEN": server.customer_token("c-transcript", name="Transcript Customer")}
    try:
        for i, step in enumerate(transcript["steps"]):
            sig = clients[step["party"]]
            if "send_raw" in step:
                await sig.send(step["send_raw"])
            elif "send_invalid" in step:  # deliberately invalid at this point of the session
                msg = step["send_invalid"]
                await sig.send(msg)
            elif "send" in step:
                msg = _fill(step["send"], captures)
                _validator("client", msg["type"]).validate(msg)
                await sig.send(msg)
            else:
                exp = step["expect"]
                got = await sig.recv(exp["type"])
                _validator("server", got["type"]).validate(got)
                _match(exp, got, captures, f"{path.name} step {i}")
        for sig in clients.values():  # everything else the server said also obeys the schemas
            for msg in sig.inbox:
                assert msg["type"] in SERVER_MESSAGES
                _validator("server", msg["type"]).validate(msg)
    finally:
        for sig in clients.values():
            await sig.close()


async def test_every_client_message_has_a_handler(server):
    """The coordinator's explicit dispatch table covers the protocol (hello and ping are
    answered by the gateway)."""
    assert server.manager.handles() == set(CLIENT_MESSAGES) - {"hello", "ping"}
