"""The REST API's OpenAPI 3.1 document (served at ``/api/openapi.json``) and its interactive docs (Swagger
UI, from the ``swagger-ui-bundle`` package, at ``/api/docs``). The document is the contract of
gateway/http.py; tests run schemathesis against it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from common.config import ExchangeConfig
from common.market import INTERVAL_MS
from gateway.rest import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>Exchange REST API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true});</script>
</body></html>
"""

DECIMAL = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "a plain decimal: no sign, no exponent"}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
         "additionalProperties": True}
SIGNED = [{"ApiKey": [], "ApiTimestamp": [], "ApiSignature": []}]


def _error_responses(*codes: int) -> dict[str, Any]:
    reasons = {400: "bad request: the reason says which field and why", 401: "missing, stale, bad or replayed signature",
               403: "an admin key does not trade", 404: "no such order of this account",
               413: "a body over gateway.max_message_bytes",
               503: "the exchange did not answer in time", 504: "the order's outcome did not come in time"}
    return {str(code): {"description": reasons[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for code in codes}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def document(config: ExchangeConfig) -> dict[str, Any]:
    symbols = [symbol.name for symbol in config.symbols]
    symbol_param = {"name": "symbol", "in": "query", "required": True, "schema": {"type": "string", "enum": symbols}}
    limit = {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
    obj = {"type": "object"}
    order = {"$ref": "#/components/schemas/Order"}
    public_errors = _error_responses(400, 503)
    private_errors = _error_responses(400, 401, 403, 503)
    clordid_param = {"name": "clordid", "in": "path", "required": True,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[!-~]+$"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Exchange REST API", "version": "1",
                 "description": "Market data and trading. Private operations are signed: see docs/rest.md. "
                                "Prices and quantities are decimal strings."},
        "paths": {
            "/api/v1/info": {"get": {"summary": "Where the live feeds are", "operationId": "info",
                                     "responses": _ok("the pusher's WebSocket address", obj)}},
            "/api/v1/symbols": {"get": {"summary": "Symbols and their trading rules", "operationId": "symbols",
                                        "responses": _ok("the symbols", obj)}},
            "/api/v1/depth": {"get": {"summary": "Order book snapshot", "operationId": "depth",
                                      "parameters": [symbol_param, limit],
                                      "responses": {**_ok("levels best first, with lastUpdateId", obj),
                                                    **public_errors}}},
            "/api/v1/trades": {"get": {"summary": "Recent trades", "operationId": "trades",
                                       "parameters": [symbol_param, limit,
                                                      {"name": "after_id", "in": "query", "required": False,
                                                       "schema": {"type": "integer", "minimum": 0}}],
                                       "responses": {**_ok("trades, oldest first", obj), **public_errors}}},
            "/api/v1/bars": {"get": {"summary": "K-line bars in a time range", "operationId": "bars",
                                     "parameters": [symbol_param,
                                                    {"name": "interval", "in": "query", "required": False,
                                                     "schema": {"type": "string", "enum": list(INTERVAL_MS)}},
                                                    {"name": "start", "in": "query", "required": False,
                                                     "schema": {"type": "integer", "minimum": 0}},
                                                    {"name": "end", "in": "query", "required": False,
                                                     "schema": {"type": "integer", "minimum": 0}},
                                                    limit],
                                     "responses": {**_ok("bars, oldest first; intervals without trades flat", obj),
                                                   **public_errors}}},
            "/api/v1/ticker": {"get": {"summary": "Rolling 24-hour ticker", "operationId": "ticker",
                                       "parameters": [symbol_param],
                                       "responses": {**_ok("the ticker (null before any trade)", obj),
                                                     **public_errors}}},
            "/api/v1/account/balances": {"get": {"summary": "The account's balances", "operationId": "balances",
                                                 "security": SIGNED,
                                                 "responses": {**_ok("available and frozen per asset", obj),
                                                               **private_errors}}},
            "/api/v1/orders": {
                "get": {"summary": "The account's open orders", "operationId": "openOrders", "security": SIGNED,
                        "parameters": [{**symbol_param, "required": False}],
                        "responses": {**_ok("open orders", obj), **private_errors}},
                "post": {"summary": "Place an order", "operationId": "placeOrder", "security": SIGNED,
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/NewOrder"}}}},
                         "responses": {**_ok("the order as accepted (it may have traded already)", order),
                                       **private_errors, **_error_responses(413, 504)}},
            },
            "/api/v1/orders/history": {
                "get": {"summary": "The account's newest orders, open and ended, with their fills",
                        "operationId": "orderHistory", "security": SIGNED,
                        "parameters": [{**symbol_param, "required": False},
                                       {"name": "limit", "in": "query", "required": False,
                                        "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                        "responses": {**_ok("orders newest first, each with fills", obj), **private_errors}}},
            "/api/v1/orders/{clordid}": {
                "parameters": [clordid_param],
                "get": {"summary": "One order of the account, open or ended", "operationId": "getOrder",
                        "security": SIGNED,
                        "responses": {**_ok("the order", obj), **private_errors, **_error_responses(404)}},
                "patch": {"summary": "Amend an open order: a new price and/or total quantity",
                          "operationId": "amendOrder", "security": SIGNED,
                          "requestBody": {"required": True, "content": {"application/json": {
                              "schema": {"$ref": "#/components/schemas/Amend"}}}},
                          "responses": {**_ok("the order as replaced", order), **private_errors,
                                        **_error_responses(404, 413, 504)}},
                "delete": {"summary": "Cancel an open order", "operationId": "cancelOrder", "security": SIGNED,
                           "responses": {**_ok("the order as cancelled", order), **private_errors,
                                         **_error_responses(404, 504)}},
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
                "ApiTimestamp": {"type": "apiKey", "in": "header", "name": TIMESTAMP_HEADER},
                "ApiSignature": {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                                 "description": "hex HMAC-SHA256 of f\"{timestamp}|{METHOD}|{path?query}|{body}\" "
                                                "under the secret's bytes"},
            },
            "schemas": {
                "Error": ERROR,
                "NewOrder": {"type": "object", "required": ["symbol", "side"], "additionalProperties": False,
                             "properties": {
                                 "symbol": {"type": "string", "enum": symbols},
                                 "side": {"type": "string", "enum": ["buy", "sell"]},
                                 "type": {"type": "string", "enum": ["limit", "market"], "default": "limit"},
                                 "price": DECIMAL, "qty": DECIMAL, "quote_qty": DECIMAL,
                                 "tif": {"type": "string", "enum": ["gtc", "ioc", "fok"]},
                                 "post_only": {"type": "boolean"},
                                 "clordid": {"type": "string", "minLength": 1, "maxLength": 64}}},
                "Amend": {"type": "object", "additionalProperties": False,
                          "properties": {"price": DECIMAL, "qty": DECIMAL,
                                         "new_clordid": {"type": "string", "minLength": 1, "maxLength": 64}}},
                "Order": {"type": "object", "properties": {
                    "order_id": {"type": ["integer", "null"]}, "clordid": {"type": "string"}, "symbol": {"type": "string"},
                    "side": {"type": "string"}, "type": {"type": "string"}, "price": {"type": "string"},
                    "qty": {"type": "string"}, "filled": {"type": "string"}, "leaves": {"type": "string"},
                    "avg_price": {"type": "string"}, "status": {"type": "string"}, "event": {"type": "string"}}},
            },
        },
    }


async def _docs_page(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


def add_docs_routes(app: web.Application) -> None:
    app.router.add_get("/api/docs", _docs_page)
    app.router.add_static("/api/docs/static", swagger_ui_path, follow_symlinks=False)
