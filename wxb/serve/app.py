"""The HTTP app: ``create_app(ServeSettings(model=...))`` -> a FastAPI app for uvicorn.

    request -> CORS (only with cors_origins) -> API key -> body size limit -> route
    startup: the app answers at once (/health: 503 "loading") while a task loads the model
             on the engine's thread, then decodes with it (/health: 200 "ok")

The routes of the OpenAI API are in ``openai_routes`` (the audio ones, for a Whisper folder, in
``transcriptions``); here are the app's own: /health, /metrics, and the playground
(``static/index.html`` at /, the folder at /static). The app binds nothing itself: ``wxb
serve`` runs it under uvicorn. Every error answers in OpenAI's shape, and none stops the
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from wxb.serve.guard import ApiKeyGuard, BodyLimit, error_response
from wxb.serve.metrics import CONTENT_TYPE, prometheus_text
from wxb.serve.openai_routes import add_routes, served
from wxb.serve.schemas import ApiError
from wxb.serve.state import Served, ServeSettings, check_model
from wxb.serve.transcriptions import PATHS as AUDIO_PATHS
from wxb.serve.transcriptions import add_audio_routes

__all__ = ["ServeSettings", "create_app"]

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("wxb.serve")


def create_app(settings: ServeSettings) -> FastAPI:
    """The app serving ``settings.model`` (and ``settings.embedding_model``, and retrieval
    from ``settings.rag``); a folder that is neither a causal LM nor a Whisper model, and one
    that is not an index, are refused here, before any model loads."""
    settings.check()
    if settings.model is not None:
        check_model(settings.model)
    index = None
    if settings.rag is not None:
        from wxb.rag.index import Index

        index = Index.load(settings.rag)
    state = Served(settings, index)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.worker.start()
        loading = asyncio.create_task(_load(state))
        yield
        loading.cancel()  # the worker finishes its read; nothing decodes with it then
        state.stop()

    app = FastAPI(title="wxb", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.served = state
    add_routes(app)
    add_audio_routes(app)
    _add_own_routes(app)
    _add_error_handlers(app)
    # Added innermost first: a request meets CORS, then the key, then the size limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       path_limits=dict.fromkeys(AUDIO_PATHS, settings.max_audio_bytes))
    if settings.api_key is not None:
        app.add_middleware(ApiKeyGuard, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-Api-Key"])
    return app


async def _load(state: Served) -> None:
    try:
        await state.worker.call(state.load)
    except Exception as err:  # a bad folder: /health and every model route say why
        state.status, state.error = "error", f"{type(err).__name__}: {err}"
        log.error("wxb serve: could not load the model: %s", state.error)
        return
    if state.status == "loading":
        state.start()


def _add_own_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        state: Served = request.app.state.served
        if state.status == "ok":
            return JSONResponse({"status": "ok"})
        body = {"status": state.status}
        if state.error is not None:
            body["message"] = state.error
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        state = served(request)
        if state.engine is None:
            raise ApiError(404, "this server serves no language model, so it has no "
                           "generation metrics")
        return PlainTextResponse(prometheus_text(state.engine), media_type=CONTENT_TYPE)

    @app.get("/")
    async def playground() -> FileResponse:
        page = STATIC / "index.html"
        if not page.is_file():
            raise ApiError(404, "this installation has no playground page")
        return FileResponse(page)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        route = f"{request.method} {request.url.path}"
        if err.status_code == 404:
            message = f"Invalid URL ({route})"
        elif err.status_code == 405:
            message = f"Method not allowed ({route})"
        else:
            message = str(err.detail)
        return error_response(ApiError(err.status_code, message, headers=err.headers))

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("wxb serve: %s %s failed", request.method, request.url.path)
        return error_response(ApiError(500, f"the server failed on this request "
                                       f"({type(err).__name__})", type="server_error"))
