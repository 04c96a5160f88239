"""A transcript in the response formats of OpenAI's /v1/audio/transcriptions, which
`wxb transcribe --format` prints and `wxb serve` answers with:

    text           the text alone
    json           {"text", "usage": {"type": "duration", "seconds"}}
    verbose_json   {"task", "language", "duration", "text", "segments": [{"id", "seek",
                    "start", "end", "text", "tokens", "temperature", "compression_ratio"}],
                    "usage"}
    srt            numbered cues, 00:01:02,345 --> 00:01:04,000 (SubRip)
    vtt            WEBVTT, then cues, 00:01:02.345 --> 00:01:04.000 (WebVTT)

The timed formats (``TIMED``) are decoded with Whisper's timestamps. Whisper's text begins
with the space of its first word; here it is stripped, as OpenAI's answers are. A segment's
``seek`` is the mel frame its 30-second window starts at, as openai-whisper numbers it. OpenAI's
``avg_logprob`` and ``no_speech_prob`` are left out: the decoding here keeps no token scores.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from wxb.errors import ConfigError
from wxb.generation.whisper import LANGUAGES

FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TIMED = ("srt", "verbose_json", "vtt")
FRAMES_PER_SECOND = 100  # mel frames of 10 ms


def render(transcript: Any, response_format: str, *, temperature: float = 0.0,
           window_seconds: float = 30.0) -> str | dict[str, Any]:
    """``transcript`` (a ``pipeline.Transcript``) as ``response_format``: a dict for the JSON
    formats, a string for the others. ``temperature`` is reported on each segment."""
    text = transcript.text.strip()
    usage = {"type": "duration", "seconds": math.ceil(transcript.duration)}
    if response_format == "text":
        return text
    if response_format == "json":
        return {"text": text, "usage": usage}
    if response_format == "verbose_json":
        return {"task": transcript.task,
                "language": LANGUAGES.get(transcript.language, transcript.language),
                "duration": round(transcript.duration, 3), "text": text,
                "segments": [segment_json(i, s, temperature, window_seconds)
                             for i, s in enumerate(transcript.segments)],
                "usage": usage}
    if response_format in ("srt", "vtt"):
        return subtitles(transcript.segments, vtt=response_format == "vtt")
    raise ConfigError(f"unknown response format {response_format!r}; choose one of: "
                     f"{', '.join(FORMATS)}")


def segment_json(index: int, segment: Any, temperature: float,
                 window_seconds: float) -> dict[str, Any]:
    """One segment of verbose_json, with openai-whisper's ``compression_ratio`` (text bytes
    over their zlib-compressed bytes; above 2.4 the text likely repeats itself)."""
    text = segment.text.strip()
    data = text.encode("utf-8")
    return {"id": index, "seek": int(segment.start // window_seconds * window_seconds
                                      * FRAMES_PER_SECOND),
            "start": round(segment.start, 2), "end": round(segment.end, 2), "text": text,
            "tokens": list(segment.tokens), "temperature": temperature,
            "compression_ratio": len(data) / len(zlib.compress(data)) if data else 0.0}


def subtitles(segments: list[Any], *, vtt: bool = False) -> str:
    """SubRip (numbered cues, a comma before the milliseconds) or WebVTT (a WEBVTT header, a
    full stop): one cue per segment, a blank line after each."""
    cues = ["WEBVTT\n"] if vtt else []
    for number, segment in enumerate(segments, start=1):
        span = f"{timestamp(segment.start, vtt)} --> {timestamp(segment.end, vtt)}"
        cues.append(f"{span}\n{segment.text.strip()}\n" if vtt else
                    f"{number}\n{span}\n{segment.text.strip()}\n")
    return "\n".join(cues)


def timestamp(seconds: float, vtt: bool = False) -> str:
    """``3725.5`` -> ``01:02:05,500`` (SubRip) or ``01:02:05.500`` (WebVTT)."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{'.' if vtt else ','}{milliseconds:03d}"


def timed_lines(segments: list[Any]) -> str:
    """One ``[00:00:01.000 --> 00:00:04.200] text`` line per segment, as openai-whisper's
    command line prints them."""
    return "\n".join(f"[{timestamp(s.start, True)} --> {timestamp(s.end, True)}] "
                     f"{s.text.strip()}" for s in segments)


def dumps(answer: str | dict[str, Any]) -> str:
    """A rendered answer as one printable string (JSON on one line)."""
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
