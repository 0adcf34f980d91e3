"""The OpenAPI 3.1 description of the REST API, served at `/api/openapi.json`.

Request bodies come from the same pydantic models the handlers validate with, so the
description cannot drift from what is enforced. The WebSocket signaling protocol is
described separately (signaling/PROTOCOL.md and its JSON Schemas).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from vteller.gateway.audit_api import MAX_PAGE, ApprovalBody, ExportBody, HoldBody, ReasonBody
from vteller.gateway.http import CUSTOMER_ID, DemoTokenBody, LoginBody

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
OBJECT = {"type": "object"}
SID = {"name": "sid", "in": "path", "required": True,
       "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
COOKIE = [{"staffCookie": []}]
BACKEND = [{"backendKey": []}]


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}}}


def _responses(ok: int = 200, ok_type: str = "application/json", *errors: int
               ) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "success",
                                     "content": {ok_type: {"schema": OBJECT
                                                           if ok_type.endswith("json")
                                                           else {}}}}}
    for status in errors:
        out[str(status)] = {"description": "typed error",
                            "content": {"application/json": {"schema": ERROR}}}
    return out


def _op(summary: str, responses: dict[str, Any], security: list[Any] | None = None,
        body: dict[str, Any] | None = None, params: list[Any] | None = None
        ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if security is not None:
        op["security"] = security
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def document(dev_mode: bool) -> dict[str, Any]:
    customer = {"name": "customer_id", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": CUSTOMER_ID.pattern}}
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("liveness", _responses())},
        "/readyz": {"get": _op("readiness (the store answers)", _responses(200, "application/json", 503))},
        "/api/login": {"post": _op("staff login; sets the session cookie", _responses(
            200, "application/json", 400, 401, 403, 413, 429), body=_json_body(LoginBody))},
        "/api/logout": {"post": _op("end the staff session (and its live connections)",
                                    _responses(200, "application/json", 403))},
        "/api/me": {"get": _op("who is logged in", _responses(200, "application/json", 401),
                               COOKIE)},
        "/api/reports/reviews": {"get": _op(
            "decisions per business type and teller (supervisors)",
            _responses(200, "application/json", 400, 401, 403), COOKIE,
            params=[_query("hours", {"type": "number", "exclusiveMinimum": 0,
                                     "maximum": 8784})])},
        "/api/backend/references/{customer_id}": {
            "put": _op("enroll or replace a customer's reference photo (bank backend)",
                       _responses(200, "application/json", 400, 401, 413, 415, 422),
                       BACKEND, params=[customer], body={"required": True, "content": {
                           "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                           "image/png": {"schema": {"type": "string", "format": "binary"}}}}),
            "delete": _op("forget a customer's reference (bank backend)",
                          _responses(200, "application/json", 400, 401, 404), BACKEND,
                          params=[customer])},
        "/api/audit/sessions": {"get": _op(
            "search sessions (auditors; the search is written to the access log)",
            _responses(200, "application/json", 400, 401, 403), COOKIE, params=[
                _query("from", {"type": "number"}), _query("to", {"type": "number"}),
                _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                _query("teller", {"type": "string"}), _query("customer", {"type": "string"}),
                _query("business_type", {"type": "string"}),
                _query("decision", {"type": "string"}), _query("flag", {"type": "string"}),
                _query("outcome", {"type": "string"}),
                _query("reason", {"type": "string"})])},
        "/api/audit/sessions/{sid}/open": {"post": _op(
            "verify a session, then open it for replay (a reason is required)",
            _responses(200, "application/json", 400, 401, 403, 404), COOKIE, params=[SID],
            body=_json_body(ReasonBody))},
        "/api/audit/sessions/{sid}/media/{name}": {"get": _op(
            "a decrypted track of an opened session (HTTP ranges)",
            _responses(200, "video/webm", 401, 403, 404), COOKIE, params=[
                SID, {"name": "name", "in": "path", "required": True,
                      "schema": {"type": "string"}},
                {"name": "grant", "in": "query", "required": True,
                 "schema": {"type": "string"}}])},
        "/api/audit/sessions/{sid}/export": {"post": _op(
            "an evidence bundle (zip), optionally encrypted to a recipient",
            _responses(200, "application/zip", 400, 401, 403, 404), COOKIE, params=[SID],
            body=_json_body(ExportBody))},
        "/api/audit/sessions/{sid}/hold": {"post": _op(
            "set or clear a legal hold", _responses(200, "application/json", 400, 401, 403, 404),
            COOKIE, params=[SID], body=_json_body(HoldBody))},
        "/api/audit/approvals": {"get": _op(
            "approvals waiting for a second person (four eyes)",
            _responses(200, "application/json", 401, 403), COOKIE)},
        "/api/audit/sessions/{sid}/approval": {"post": _op(
            "confirm or reject a teller's approval (another auditor, after opening it)",
            _responses(200, "application/json", 400, 401, 403, 404, 409), COOKIE,
            params=[SID], body=_json_body(ApprovalBody))},
        "/api/audit/access-log": {"get": _op(
            "the signed access log (auditors with review_access)",
            _responses(200, "application/json", 401, 403), COOKIE,
            params=[_query("session", {"type": "string"})])},
    }
    if dev_mode:
        paths["/api/dev/customer-token"] = {"post": _op(
            "a demo customer token (dev mode only)", _responses(200, "application/json", 400),
            body=_json_body(DemoTokenBody))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "vteller REST API", "version": "1",
                 "description": "Staff, auditor and bank-backend endpoints. Errors are "
                 "`{error: {code, message}}`. Signaling is a WebSocket at /ws "
                 "(signaling/PROTOCOL.md)."},
        "components": {"securitySchemes": {
            "staffCookie": {"type": "apiKey", "in": "cookie", "name": "__Host-vteller_session"},
            "backendKey": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
