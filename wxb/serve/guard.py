"""Two ASGI middlewares that stand before every route: the API key and the body size limit.

They answer in OpenAI's error shape themselves, since they run outside FastAPI's exception
handlers.
"""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wxb.serve.schemas import ApiError

# What a browser loads before it can ask for a key, and what a load balancer polls.
OPEN_PATHS = ("/", "/health")
OPEN_PREFIXES = ("/static/",)


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class ApiKeyGuard:
    """Every route but the open ones needs ``Authorization: Bearer <key>`` or
    ``X-Api-Key: <key>``; the comparison takes the same time whatever the key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"")
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer":
            given = token.strip()
        if given and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        error = ApiError(401, "a valid API key is needed: send 'Authorization: Bearer <key>' "
                         "or 'X-Api-Key: <key>'", type="authentication_error",
                         code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await error_response(error)(scope, receive, send)


class BodyLimit:
    """Refuse a body over ``max_bytes`` with 413: at once when Content-Length says so, and
    while reading it otherwise (a chunked body has no length). The body read is handed on to
    the app unchanged. ``path_limits`` give some paths a limit of their own (an audio upload
    is larger than any JSON request)."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.path_limits = app, max_bytes, path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(ApiError(400, "Content-Length is not a number"))(
                    scope, receive, send)
                return
            if int(length) > limit:
                await self._too_large(limit, scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._too_large(limit, scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # from here on: only the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(413, f"the request body is over the limit of {limit} bytes",
                         code="request_too_large")
        await error_response(error)(scope, receive, send)
