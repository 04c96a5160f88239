"""Speech datasets: utterances (audio, sampling rate, transcript, speaker), from real recordings
packed in one ``.npz`` and from speech synthesized with ``espeak-ng``, and splits that keep
each speaker on one side.

Real recordings (in ``../shared/data``, see its README):

- ``fsdd/fsdd.npz``, the Free Spoken Digit Dataset: 3,000 English digits, 6 speakers, 8 kHz;
  the transcript is the digit's English word ("zero" ... "nine");
- ``aishell_sample/aishell_sample.npz``: 150 Mandarin utterances, 2 speakers, 16 kHz, with
  their transcripts (Simplified characters, no punctuation).

Both store every utterance's int16 samples end to end in ``audio`` with ``offsets`` (utterance
``i`` is ``audio[offsets[i]:offsets[i + 1]]``), a ``speaker`` per utterance and one
``sample_rate``. Samples become float32 as a WAV reader scales them (int16 / 32768), through
the same ``wxb.audio.audio_from_array`` that files go through, so resampling is the same too.

Synthesized speech (``synthesize_speech``): sentences read aloud by espeak-ng (Debian package
``espeak-ng``), English (``en-us``) or Mandarin (``cmn``) voices with voice variants (``+f3``,
``+m3``, ...), several speeds and pitches, written as WAV files with a ``transcripts.jsonl``.
It is far easier than real speech — one synthetic voice per variant, no noise, no
hesitation, perfectly regular pronunciation — so an error rate on it says little about real
recordings. Sentences come from the shared data's short, clean ones (``read_sentences``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from wxb.audio.io import audio_from_array, load_audio
from wxb.errors import DataError
from wxb.io import atomic_dir
from wxb.tokenizers.normalize import Normalizer

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRANSCRIPTS_FILE = "transcripts.jsonl"


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One recording: ``audio`` (samples,) float32 mono at ``sampling_rate``, what is said in
    it, who says it (a speaker id; for synthesized speech, the espeak-ng voice), its language
    code and an ``id`` unique in its dataset."""

    id: str
    audio: np.ndarray
    sampling_rate: int
    transcript: str
    speaker: str
    language: str

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sampling_rate


# Real recordings ----------------------------------------------------------------------------

def read_fsdd(path: str | os.PathLike, *, sampling_rate: int | None = None) -> list[Utterance]:
    """The Free Spoken Digit Dataset (``fsdd.npz`` or its folder): transcripts "zero" ...
    "nine", speakers by name, ids as the original file names (``7_theo_23``); audio at 8 kHz,
    or resampled to ``sampling_rate``."""
    data, path = _read_packed(path, "fsdd.npz", ("label", "filename"))
    labels = data["label"].astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: label holds {labels.min()}..{labels.max()}; FSDD labels are "
                        "the digits 0-9")
    ids = [Path(str(name)).stem for name in data["filename"]]
    return _utterances(data, path, ids, [DIGIT_WORDS[d] for d in labels], "en", sampling_rate)


def read_aishell_sample(path: str | os.PathLike, *,
                        sampling_rate: int | None = None) -> list[Utterance]:
    """The AISHELL sample (``aishell_sample.npz`` or its folder): Mandarin, 16 kHz, ids such as
    ``BAC009S0150W0001``, transcripts as given (Simplified, no punctuation)."""
    data, path = _read_packed(path, "aishell_sample.npz", ("utt_id", "text"))
    return _utterances(data, path, [str(i) for i in data["utt_id"]],
                       [str(t) for t in data["text"]], "zh", sampling_rate)


def _read_packed(path: str | os.PathLike, file_name: str,
                 keys: tuple[str, ...]) -> tuple[dict[str, np.ndarray], Path]:
    """The arrays of a packed-audio ``.npz`` (see the module docstring), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise DataError(f"{path} does not exist; give the {file_name} file or its folder "
                        "(../shared/data has it)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable .npz archive ({err})") from None
    needed = ("audio", "offsets", "speaker", "sample_rate", *keys)
    missing = [key for key in needed if key not in data]
    if missing:
        raise DataError(f"{path} has no {', '.join(missing)}; a packed speech file holds "
                        f"{', '.join(needed)}")
    offsets, count = data["offsets"], len(data["offsets"]) - 1
    if (count < 1 or offsets[0] != 0 or offsets[-1] != len(data["audio"])
            or np.any(np.diff(offsets) < 0)):
        raise DataError(f"{path}: offsets must rise from 0 to len(audio) = "
                        f"{len(data['audio'])}, one entry more than there are utterances")
    for key in ("speaker", *keys):
        if len(data[key]) != count:
            raise DataError(f"{path}: {key} has {len(data[key])} entries for {count} "
                            "utterances (len(offsets) - 1)")
    return data, path


def _utterances(data: dict[str, np.ndarray], path: Path, ids: list[str], transcripts: list[str],
                language: str, sampling_rate: int | None) -> list[Utterance]:
    rate, offsets, audio = int(data["sample_rate"]), data["offsets"], data["audio"]
    out = []
    for i, (uid, transcript, speaker) in enumerate(zip(ids, transcripts, data["speaker"],
                                                       strict=True)):
        clip = audio_from_array(audio[offsets[i]:offsets[i + 1]], rate, sampling_rate,
                                path=path)
        out.append(Utterance(uid, clip.array, clip.sampling_rate, transcript, str(speaker),
                             language))
    return out


def split_by_speaker(utterances: Sequence[Utterance], *,
                     test_speakers: int | Sequence[str] = 1,
                     validation_speakers: int | Sequence[str] = 0,
                     seed: int = 0) -> dict[str, list[Utterance]]:
    """Train / validation / test with no speaker in two of them, so a score on the test set
    is a score on voices the model never heard. Each held-out side is a number of speakers
    (drawn with ``seed``) or their names; the rest train. A side of 0 speakers is left out."""
    speakers = sorted({u.speaker for u in utterances})
    pool = list(speakers)
    random.Random(seed).shuffle(pool)
    chosen: dict[str, list[str]] = {}
    held_out: list[str] = []
    for side, wanted in (("test", test_speakers), ("validation", validation_speakers)):
        if isinstance(wanted, int):
            if wanted < 0:
                raise DataError(f"{side}_speakers must be 0 or more, got {wanted}")
            names = [s for s in pool if s not in held_out][:wanted]
        else:
            names = [wanted] if isinstance(wanted, str) else [str(s) for s in wanted]
            unknown = [s for s in names if s not in speakers]
            if unknown:
                raise DataError(f"unknown speaker {unknown[0]!r} in {side}_speakers; the "
                                f"speakers are: {', '.join(speakers)}")
            twice = [s for s in names if s in held_out]
            if twice:
                raise DataError(f"speaker {twice[0]!r} is in both test_speakers and "
                                "validation_speakers")
        chosen[side] = names
        held_out += names
    if len(held_out) >= len(speakers):
        raise DataError(f"cannot hold out {test_speakers} test and {validation_speakers} "
                        f"validation speakers of {len(speakers)} ({', '.join(speakers)}): "
                        "none would be left to train on")
    splits = {"train": [u for u in utterances if u.speaker not in held_out]}
    for side in ("validation", "test"):
        if chosen[side]:
            splits[side] = [u for u in utterances if u.speaker in chosen[side]]
    return splits


# Sentences to synthesize --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SentenceSource:
    """Where short sentences are in the shared data: a headerless TSV ``file`` (under the
    data folder), its ``column`` (0-based) and the language."""

    file: str
    column: int
    language: str


# Tatoeba's sentences are short, everyday and cleanly written (SST-2 is lower-cased and
# tokenized, "it 's", and XSum's are long news sentences, so neither reads well aloud);
# LCSTS's headlines are short Mandarin news sentences.
SENTENCE_SOURCES = {
    "tatoeba-en": SentenceSource("translation/eng-cmn.tsv", 0, "en"),
    "tatoeba-zh": SentenceSource("translation/eng-cmn.tsv", 1, "zh"),
    "lcsts": SentenceSource("lcsts_zh/train_2k.tsv", 0, "zh"),
}
# What a sentence may hold to be read aloud exactly as written: for English, letters and
# light punctuation (no digits, which espeak-ng reads as number words); for Mandarin, Chinese
# characters and full-width punctuation (no Latin letters or digits).
_SPEAKABLE = {
    "en": re.compile(r"[A-Za-z][A-Za-z ,.'?!-]*"),
    "zh": re.compile(r"[\u4e00-\u9fff][\u4e00-\u9fff，。？！、；：]*"),
}
MAX_CHARACTERS = {"en": 60, "zh": 20}


def read_sentences(data_dir: str | os.PathLike, source: str, *, limit: int = 200,
                   max_characters: int | None = None, seed: int = 0) -> list[str]:
    """``limit`` distinct sentences of ``source`` (one of ``SENTENCE_SOURCES``) that can be read
    aloud as written (see ``_SPEAKABLE``) and have at most ``max_characters`` (default 60 for
    English, 20 for Mandarin), drawn with ``seed``. Mandarin is converted to Simplified
    (Tatoeba mixes in Traditional)."""
    if source not in SENTENCE_SOURCES:
        raise DataError(f"unknown sentence source {source!r}; the sources are: "
                        f"{', '.join(SENTENCE_SOURCES)}")
    spec = SENTENCE_SOURCES[source]
    path = Path(data_dir) / spec.file
    if not path.is_file():
        raise DataError(f"{path} does not exist; give the shared data folder as data_dir "
                        "(e.g. ../shared/data)")
    longest = max_characters or MAX_CHARACTERS[spec.language]
    convert = Normalizer("t2s") if spec.language == "zh" else str
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) <= spec.column:
                continue
            text = convert(fields[spec.column].strip())
            if len(text) <= longest and _SPEAKABLE[spec.language].fullmatch(text):
                seen[text] = None
    sentences = list(seen)
    if len(sentences) < limit:
        raise DataError(f"{path} has {len(sentences)} speakable sentences of at most {longest} "
                        f"characters, fewer than the {limit} asked for; lower limit or raise "
                        "max_characters")
    return random.Random(seed).sample(sentences, limit)


# Synthesis ----------------------------------------------------------------------------------

VOICES = {"en": ("en-us", "en-us+f3", "en-us+m3", "en-us+f5"),
          "zh": ("cmn", "cmn+f3", "cmn+m3", "cmn+f5")}
SPEEDS = (140, 175, 210)  # words per minute; espeak-ng's default is 175
PITCHES = (35, 50, 65)  # 0-99; espeak-ng's default is 50


def synthesize_speech(sentences: Sequence[str], cache_dir: str | os.PathLike, *,
                      language: str = "en", voices: Sequence[str] | None = None,
                      speeds: Sequence[int] = SPEEDS, pitches: Sequence[int] = PITCHES,
                      variants: int = 1, seed: int = 0, workers: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Path:
    """Read every sentence aloud ``variants`` times with espeak-ng, each time in a voice,
    speed and pitch drawn with ``seed`` from those given, into a folder under ``cache_dir``:
    ``wav/000000.wav`` ... (espeak-ng's 22,050 Hz 16-bit mono) and ``transcripts.jsonl`` (one
    line per file: id, audio, transcript, speaker (= the voice), voice, speed, pitch,
    language). Returns the folder.

    The folder's name holds a hash of everything that shapes it (sentences, settings, the
    espeak-ng version), so a second call with the same arguments reuses it at once and a
    changed one builds another. It is built in a temporary folder and renamed into place
    whole: an interrupted build leaves no half-made dataset. ``progress(done, total)`` is
    called as files are written.
    """
    espeak = _espeak_ng()
    voices = tuple(voices or VOICES.get(language, ()))
    if not voices:
        raise DataError(f"no default espeak-ng voices for language {language!r}; give voices= "
                        f"(the defaults: {VOICES})")
    _check_voices(espeak, voices)
    for name, values, low, high in (("speeds", speeds, 80, 450), ("pitches", pitches, 0, 99)):
        if not values or not all(isinstance(v, int) and low <= v <= high for v in values):
            raise DataError(f"{name} must be whole numbers from {low} to {high}, got "
                            f"{list(values)}")
    if variants < 1:
        raise DataError(f"variants must be 1 or more, got {variants}")
    sentences = [str(s).strip() for s in sentences]
    if not sentences:
        raise DataError("no sentences to synthesize")
    blank = next((i for i, s in enumerate(sentences) if not s), None)
    if blank is not None:
        raise DataError(f"sentence {blank} is empty; every sentence needs words to read")
    rng = random.Random(seed)
    rows = []
    for n in range(variants * len(sentences)):
        voice = rng.choice(voices)
        rows.append({"id": f"{n:06d}", "audio": f"wav/{n:06d}.wav",
                     "transcript": sentences[n % len(sentences)], "speaker": voice,
                     "voice": voice, "speed": rng.choice(list(speeds)),
                     "pitch": rng.choice(list(pitches)), "language": language})
    version = _espeak_version(espeak)
    key = hashlib.sha256(json.dumps([version, rows], ensure_ascii=False).encode()).hexdigest()
    folder = Path(cache_dir) / f"espeak-{language}-{key[:12]}"
    if (folder / TRANSCRIPTS_FILE).is_file():
        return folder
    with atomic_dir(folder) as tmp:
        (tmp / "wav").mkdir()
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for done, _ in enumerate(pool.map(lambda row: _speak(espeak, row, tmp), rows), 1):
                if progress is not None:
                    progress(done, len(rows))
        (tmp / TRANSCRIPTS_FILE).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
            encoding="utf-8")
        (tmp / "dataset.json").write_text(json.dumps({
            "synthesizer": version, "sentences": len(sentences), "files": len(rows),
            "voices": list(voices), "speeds": list(speeds), "pitches": list(pitches),
            "variants": variants, "seed": seed,
            "note": "synthesized speech: far easier than real recordings"},
            indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def read_speech_folder(folder: str | os.PathLike, *,
                       sampling_rate: int | None = 16000) -> list[Utterance]:
    """The utterances of a folder with a ``transcripts.jsonl`` (as ``synthesize_speech``
    writes it: ``{"id", "audio" (a path relative to the folder), "transcript", "speaker",
    "language"}`` per line), audio resampled to ``sampling_rate`` (None: as stored)."""
    folder = Path(folder)
    path = folder / TRANSCRIPTS_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist; a speech folder holds a {TRANSCRIPTS_FILE} "
                        "(build one with synthesize_speech)")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number} is not valid JSON ({err.msg})") from None
        fields = ("id", "audio", "transcript", "speaker", "language")
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in fields):
            raise DataError(f"{path}:{number} must be an object with string fields "
                            f"{', '.join(fields)}")
        audio = load_audio(folder / row["audio"], sampling_rate)
        out.append(Utterance(row["id"], audio.array, audio.sampling_rate, row["transcript"],
                             row["speaker"], row["language"]))
    if not out:
        raise DataError(f"{path} holds no utterances")
    return out


def _espeak_ng() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise DataError("espeak-ng is not installed; install it (Debian/Ubuntu: apt-get "
                        "install espeak-ng) to synthesize speech")
    return found


@cache
def _espeak_version(espeak: str) -> str:
    out = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split("Data at")[0].strip()


@cache
def _espeak_names(espeak: str) -> tuple[frozenset[str], frozenset[str]]:
    """The voices ``-v`` takes (languages such as ``en-us``, ``cmn`` or ``en``, and voice
    files such as ``gmw/en-US``) and the voice variants (``f3``, ``m3``, ...) of this
    espeak-ng; an unknown variant would be ignored by espeak-ng without a word."""
    def rows(option: str) -> list[str]:
        out = subprocess.run([espeak, option], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[1:]  # under the header line

    languages = set()
    for line in rows("--voices"):
        # "Pty Language Age/Gender VoiceName File Other Languages", e.g.
        # " 2  en-us  --/M  English_(America)  gmw/en-US  (en 3)"
        fields = line.split()
        if len(fields) > 4:
            languages.update((fields[1], fields[4]))
            languages.update(re.findall(r"\(([\w-]+) \d+\)", line))
    variants = {line.split()[4].split("/")[-1] for line in rows("--voices=variant")
                if len(line.split()) > 4}
    return frozenset(languages), frozenset(variants)


def _check_voices(espeak: str, voices: Sequence[str]) -> None:
    languages, variants = _espeak_names(espeak)
    for voice in voices:
        language, _, variant = voice.partition("+")
        if language not in languages:
            near = sorted(x for x in languages if x.split("-")[0] == language.split("-")[0])
            raise DataError(f"espeak-ng has no voice {language!r}"
                            + (f"; for that language: {', '.join(near)}" if near else
                               "; list them with espeak-ng --voices"))
        if variant and variant not in variants:
            raise DataError(f"espeak-ng has no voice variant {variant!r} (in {voice!r}); "
                            "e.g. f1-f5, m1-m8, klatt (list them with espeak-ng "
                            "--voices=variant)")


def _speak(espeak: str, row: dict, folder: Path) -> None:
    path = folder / row["audio"]
    # The text goes in on stdin, so a sentence that starts with "-" is not read as an option.
    command = [espeak, "-v", row["voice"], "-s", str(row["speed"]), "-p", str(row["pitch"]),
               "-b", "1", "-w", str(path), "--stdin"]
    done = subprocess.run(command, input=row["transcript"].encode("utf-8"),
                          capture_output=True, check=False)
    if done.returncode != 0 or not path.is_file() or path.stat().st_size <= 44:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"espeak-ng could not read {row['transcript']!r:.60} with voice "
                        f"{row['voice']!r} ({reason[0] if reason else 'no audio written'})")
