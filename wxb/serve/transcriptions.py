"""OpenAI's /v1/audio/transcriptions and /v1/audio/translations (into English), served when
the folder is a Whisper model.

The request is a multipart form, as OpenAI's clients send it (a translation has no language):

    file                      the audio (WAV, FLAC, OGG, MP3; any rate; up to max_audio_bytes)
    model                     the served model's id (optional here, as on the other routes)
    language                  a code (en, zh) or name; default: detected, or English
    prompt                    earlier text to continue from: not supported (refused unless empty)
    response_format           json (default), text, srt, verbose_json or vtt
    temperature               0 (default): greedy; above 0 (up to 1): sampled at it, once
    timestamp_granularities[] segment (word timestamps are not supported); verbose_json only
    stream                    false only

and the answer is shaped as OpenAI's (``wxb.tasks.speech_recognition.formats``); every error
in OpenAI's error shape, naming the field. The upload is written to a temporary file (the
audio reader takes paths, and tells formats by their content), decoded and transcribed on the
engine's thread, where all of the server's torch work runs.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from wxb.errors import ConfigError, DataError
from wxb.serve.openai_routes import served
from wxb.serve.schemas import ApiError

FIELDS = ("file", "model", "language", "prompt", "response_format", "temperature",
          "timestamp_granularities[]", "stream")


async def transcriptions(request: Request) -> Response:
    return await _answer(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _answer(request, "translate")


async def _answer(request: Request, task: str) -> Response:
    from wxb.tasks.speech_recognition.formats import FORMATS, TIMED, render

    state = served(request)
    if state.transcriber is None:
        raise ApiError(404, f"this server serves no speech recognition model; "
                       f"{request.url.path} needs a Whisper folder (wxb serve --model "
                       "runs/whisper-tiny.en)", param="model", code="model_not_found")
    fields = FIELDS if task == "transcribe" else tuple(f for f in FIELDS if f != "language")
    form = await _form(request, fields)
    name = _text(form, "model")
    if name is not None and name != state.model_id:
        raise ApiError(404, f"The model `{name}` does not exist; this server transcribes with "
                       f"`{state.model_id}`", param="model", code="model_not_found")
    upload = form.get("file")
    if upload is None:
        raise ApiError(400, "file is required: the audio to transcribe, as a multipart file",
                       param="file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "file must be an uploaded file, not a text field", param="file")
    response_format = _text(form, "response_format") or "json"
    if response_format not in FORMATS:
        raise ApiError(400, f"response_format {response_format!r} is not supported; choose "
                       f"one of: {', '.join(FORMATS)}", param="response_format")
    _check_granularities(form.getlist("timestamp_granularities[]"), response_format)
    if _text(form, "prompt"):
        raise ApiError(400, "prompt is not supported by this server (it decodes each window "
                       "after its own forced prompt); leave it out", param="prompt")
    if (_text(form, "stream") or "false").lower() != "false":
        raise ApiError(400, "streaming transcriptions is not supported; leave stream out",
                       param="stream")
    temperature = _temperature(_text(form, "temperature"))
    language = _text(form, "language") or None
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
    data, filename = await upload.read(), upload.filename or "audio"
    transcriber = state.transcriber

    def transcribe() -> Any:  # on the engine's thread
        return transcriber.transcribe(
            _audio(transcriber, data, filename), language=language, task=task,
            return_timestamps=response_format in TIMED, **sampling)

    try:
        transcript = await state.worker.call(transcribe)
    except DataError as err:
        raise ApiError(400, str(err), param="file") from None
    except ConfigError as err:  # a language or task the model cannot take
        raise ApiError(400, str(err), param="language" if language else None) from None
    answer = render(transcript, response_format, temperature=temperature,
                    window_seconds=transcriber.extractor.chunk_length)
    if isinstance(answer, dict):
        return JSONResponse(answer)
    return PlainTextResponse(answer)


async def _form(request: Request, fields: tuple[str, ...]) -> Any:
    """The multipart form, its fields checked against ``fields``."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise ApiError(400, f"the request must be multipart/form-data (got {kind or 'none'}), "
                       "with the audio as its file field")
    try:
        form = await request.form(max_files=1)
    except Exception as err:  # starlette's parser: a damaged or over-full form
        raise ApiError(400, f"the multipart form cannot be read ({err})") from None
    unknown = next((key for key in form if key not in fields), None)
    if unknown is not None:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown} (this route "
                       f"reads {', '.join(fields)})", param=unknown)
    return form


def _text(form: Any, field: str) -> str | None:
    value = form.get(field)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{field} must be a text field, not a file", param=field)
    return value


def _temperature(value: str | None) -> float:
    if value is None or value == "":
        return 0.0
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    if not 0 <= temperature <= 1:
        raise ApiError(400, f"temperature must be a number from 0 to 1, got {value!r}",
                       param="temperature")
    return temperature


def _check_granularities(values: list[Any], response_format: str) -> None:
    for value in values:
        if value != "segment":
            raise ApiError(400, f"timestamp_granularities[] {value!r} is not supported; this "
                           "server gives segment timestamps", param="timestamp_granularities[]")
    if values and response_format != "verbose_json":
        raise ApiError(400, "timestamp_granularities[] needs response_format verbose_json",
                       param="timestamp_granularities[]")


def _audio(transcriber: Any, data: bytes, filename: str) -> Any:
    """The uploaded bytes decoded as the transcriber reads a file (its errors name the
    upload's file name, not the temporary file's path)."""
    suffix = Path(filename).suffix
    with tempfile.TemporaryDirectory(prefix="wxb-audio-") as folder:
        path = Path(folder) / f"upload{suffix if suffix[1:17].isalnum() else ''}"
        path.write_bytes(data)
        try:
            return transcriber.audio(path)
        except DataError as err:
            raise DataError(str(err).replace(str(path), filename)) from None


ROUTES = [("/v1/audio/transcriptions", transcriptions), ("/v1/audio/translations", translations)]
PATHS = tuple(path for path, _ in ROUTES)


def add_audio_routes(app: FastAPI) -> None:
    for path, endpoint in ROUTES:
        app.add_api_route(path, endpoint, methods=["POST"])
