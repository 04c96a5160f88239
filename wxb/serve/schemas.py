"""The request bodies of the OpenAI-compatible API, validated field by field.

Each body is a pydantic model in strict mode: a wrong type is refused rather than coerced
("1" is not a number, 1 is not a boolean), NaN and infinities are refused, and a field this
server does not implement (``tools``, ``logit_bias``, ``response_format``, ...) is an error that
names it, never silently dropped. A field sent as ``null`` counts as not sent, as OpenAI reads
it. The limits that depend on the server's settings (n, stop strings) are checked by
``check_limits``; those that depend on the model (context, vocabulary) by the routes.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ApiError(Exception):
    """An answer in OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(Body):
    include_usage: bool = False


class TextPart(Body):
    type: Literal["text"]
    text: str


class Message(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: list[TextPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(f"content parts of type {kind!r} are not supported; this "
                                     "server reads text parts ({'type': 'text', 'text': ...})")
        return value

    def as_template_input(self) -> dict[str, str]:
        """The message as a chat template reads it: its parts joined, as vLLM joins them;
        OpenAI's ``developer`` role is the ``system`` role of older templates."""
        message = {"role": "system" if self.role == "developer" else self.role,
                   "content": "\n".join(part.text for part in self.content)}
        if self.name is not None:
            message["name"] = self.name
        return message


class Sampling(Body):
    """What chat and text completions share."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1)  # vLLM's extension: 0 or -1 is off
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    stop: list[str] = []
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens


class CompletionRequest(Sampling):
    """``prompt`` arrives as a string, strings, token ids or lists of token ids, and is kept
    as a list of prompts, each a string or a list of ids."""

    prompt: list[str | list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompts(cls, value: Any) -> Any:
        def ids(items: Any) -> bool:
            return (isinstance(items, list) and bool(items)
                    and all(isinstance(i, int) and not isinstance(i, bool) for i in items))

        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value:
            if all(isinstance(p, str) for p in value):
                return value
            if ids(value):
                return [value]
            if all(ids(p) for p in value):
                return value
        raise ValueError("prompt must be a string, a list of strings, a list of token ids or "
                         "a list of lists of token ids, none of them empty")


class EmbeddingRequest(Body):
    input: list[str] = Field(min_length=1)
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and any(isinstance(v, (int, list)) for v in value):
            raise ValueError("token ids are not supported as input; send the text")
        if isinstance(value, list) and any(v == "" for v in value):
            raise ValueError("input must not hold an empty string")
        return value


class TokenizeRequest(Body):
    """vLLM's /tokenize: a ``prompt`` as completions read it, or ``messages`` as chat does."""

    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = Field(None, min_length=1)
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True


class DetokenizeRequest(Body):
    model: str | None = None
    tokens: list[int]


B = TypeVar("B", bound=Body)


def parse(raw: bytes, kind: type[B]) -> B:
    """The body ``raw`` as a ``kind``, or an ApiError (400) naming what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ApiError(400, f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(data).__name__}")
    try:
        return kind.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as err:
        raise _invalid(err) from None


def _invalid(err: ValidationError) -> ApiError:
    first = err.errors(include_url=False)[0]
    param = "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                    for part in first["loc"]).lstrip(".") or None
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param} (this server does not " \
                  "support it)"
    elif first["type"] == "missing":
        message = f"{param} is required"
    else:
        message = f"{param}: {first['msg'].removeprefix('Value error, ')}"
    return ApiError(400, message, param=param)


def check_limits(body: Sampling, *, max_n: int, max_stop: int, max_stop_length: int) -> None:
    """The server's limits on n and on stop strings, and the fields that need another."""
    if body.n > max_n:
        raise ApiError(400, f"n is {body.n}; this server gives at most {max_n} choices",
                       param="n")
    if len(body.stop) > max_stop:
        raise ApiError(400, f"stop holds {len(body.stop)} strings; at most {max_stop} are "
                       "allowed", param="stop")
    for text in body.stop:
        if not 1 <= len(text) <= max_stop_length:
            raise ApiError(400, f"each stop string must have 1 to {max_stop_length} "
                           f"characters, got {len(text)}", param="stop")
    if body.stream_options is not None and not body.stream:
        raise ApiError(400, "stream_options is only allowed when stream is true",
                       param="stream_options")
    if isinstance(body, ChatRequest) and body.top_logprobs is not None and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs set to true", param="top_logprobs")
