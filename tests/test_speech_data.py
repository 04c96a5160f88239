"""Speech data: packed recordings shaped like the shared FSDD and AISHELL sample files, splits
that keep each speaker on one side, sentences that can be read aloud, and a dataset
synthesized with espeak-ng (cached, atomic, read back at 16 kHz)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wxb.audio import audio_from_array
from wxb.data import speech
from wxb.data.speech import (
    DIGIT_WORDS,
    read_aishell_sample,
    read_fsdd,
    read_sentences,
    read_speech_folder,
    split_by_speaker,
    synthesize_speech,
)
from wxb.errors import DataError

SPEAKERS = ["george", "jackson", "theo"]


def _fsdd(path, rate: int = 8000, **override) -> list[np.ndarray]:
    """A tiny fsdd.npz: 3 speakers x digits 3 and 7 x 2 takes of random int16 noise."""
    rng = np.random.default_rng(0)
    clips, labels, speakers, takes, names = [], [], [], [], []
    for digit in (3, 7):
        for speaker in SPEAKERS:
            for take in range(2):
                clips.append(rng.integers(-3000, 3000, rng.integers(900, 1600), dtype=np.int16))
                labels.append(digit)
                speakers.append(speaker)
                takes.append(take)
                names.append(f"{digit}_{speaker}_{take}.wav")
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
    arrays = {"audio": np.concatenate(clips), "offsets": offsets,
              "label": np.array(labels, np.int8), "speaker": np.array(speakers),
              "index": np.array(takes, np.int16), "filename": np.array(names),
              "sample_rate": np.array(rate, np.int64), **override}
    np.savez_compressed(path, **arrays)
    return clips


def test_fsdd_gives_digit_words_speakers_and_audio_as_a_wav_reader_scales_it(tmp_path):
    clips = _fsdd(tmp_path / "fsdd.npz")
    utterances = read_fsdd(tmp_path)  # the folder or the file
    assert len(utterances) == 12 and read_fsdd(tmp_path / "fsdd.npz")[5].id == utterances[5].id
    first = utterances[0]
    assert (first.id, first.transcript, first.speaker, first.language) == \
        ("3_george_0", "three", "george", "en")
    assert first.sampling_rate == 8000 and first.audio.dtype == np.float32
    assert np.array_equal(first.audio, clips[0] / np.float32(32768))
    assert {u.transcript for u in utterances} == {DIGIT_WORDS[3], DIGIT_WORDS[7]} == \
        {"three", "seven"}
    # Resampled on the way in, by the same function files go through.
    at16k = read_fsdd(tmp_path, sampling_rate=16000)[0]
    assert at16k.sampling_rate == 16000 and len(at16k.audio) == 2 * len(clips[0])
    assert np.array_equal(at16k.audio, audio_from_array(clips[0], 8000, 16000).array)
    assert at16k.duration == pytest.approx(len(clips[0]) / 8000)


def test_aishell_sample_reads_the_mandarin_transcripts(tmp_path):
    audio = np.arange(-500, 500, dtype=np.int16)
    np.savez(tmp_path / "aishell_sample.npz", audio=audio,
             offsets=np.array([0, 400, 1000], np.int64),
             utt_id=np.array(["BAC009S0150W0001", "BAC009S0252W0007"]),
             speaker=np.array(["S0150", "S0252"]),
             text=np.array(["设定二十九度", "想听歌曲M A P S"]),
             sample_rate=np.array(16000))
    first, second = read_aishell_sample(tmp_path)
    assert (first.id, first.transcript, first.speaker, first.language) == \
        ("BAC009S0150W0001", "设定二十九度", "S0150", "zh")
    assert second.transcript == "想听歌曲M A P S" and len(second.audio) == 600
    assert np.array_equal(second.audio, audio[400:] / np.float32(32768))


def test_packed_files_with_missing_or_inconsistent_arrays_say_which(tmp_path):
    with pytest.raises(DataError, match=r"fsdd\.npz does not exist; give the fsdd\.npz file"):
        read_fsdd(tmp_path)
    _fsdd(tmp_path / "fsdd.npz", filename=None)
    # np.savez stores None as an object array, which is refused without pickle.
    with pytest.raises(DataError, match=r"not a readable \.npz archive"):
        read_fsdd(tmp_path)
    arrays = dict(np.load(tmp_path / "fsdd.npz", allow_pickle=True))
    del arrays["filename"]
    np.savez(tmp_path / "fsdd.npz", **arrays)
    with pytest.raises(DataError, match="has no filename; a packed speech file holds"):
        read_fsdd(tmp_path)
    arrays["filename"] = np.array(["x.wav"] * 12)
    arrays["offsets"] = arrays["offsets"][:-1]
    np.savez(tmp_path / "fsdd.npz", **arrays)
    with pytest.raises(DataError, match=r"offsets must rise from 0 to len\(audio\)"):
        read_fsdd(tmp_path)
    arrays["offsets"] = np.linspace(0, len(arrays["audio"]), 13).astype(np.int64)
    arrays["speaker"] = arrays["speaker"][:5]
    np.savez(tmp_path / "fsdd.npz", **arrays)
    with pytest.raises(DataError, match="speaker has 5 entries for 12 utterances"):
        read_fsdd(tmp_path)


def test_split_by_speaker_keeps_every_speaker_on_one_side(tmp_path):
    _fsdd(tmp_path / "fsdd.npz")
    utterances = read_fsdd(tmp_path)
    splits = split_by_speaker(utterances, test_speakers=1, validation_speakers=1, seed=3)
    sides = {name: {u.speaker for u in split} for name, split in splits.items()}
    assert sorted(splits) == ["test", "train", "validation"]
    assert [len(s) for s in sides.values()] == [1, 1, 1]
    assert set.union(*sides.values()) == set(SPEAKERS)
    assert sum(len(split) for split in splits.values()) == len(utterances)
    assert split_by_speaker(utterances, test_speakers=1, validation_speakers=1, seed=3) == splits
    named = split_by_speaker(utterances, test_speakers=["theo"])
    assert sorted(named) == ["test", "train"]  # no validation speakers: no validation split
    assert {u.speaker for u in named["test"]} == {"theo"} and len(named["train"]) == 8
    assert {u.speaker for u in split_by_speaker(utterances, test_speakers="theo")["test"]} == \
        {"theo"}
    with pytest.raises(DataError, match="unknown speaker 'lucas' in test_speakers; the "
                                        "speakers are: george, jackson, theo"):
        split_by_speaker(utterances, test_speakers=["lucas"])
    with pytest.raises(DataError, match="none would be left to train on"):
        split_by_speaker(utterances, test_speakers=2, validation_speakers=1)
    with pytest.raises(DataError, match="'theo' is in both"):
        split_by_speaker(utterances, test_speakers=["theo"], validation_speakers=["theo"])


def test_sentences_are_speakable_short_distinct_and_simplified(tmp_path):
    folder = tmp_path / "translation"
    folder.mkdir()
    rows = [("Hi.", "嗨。"), ("Hi.", "你好。"), ("I was born in 1990.", "我生於1990年。"),
            ("Call Tom.", "給湯姆打電話。"), ("Wait!", "等一下！"),
            ("This sentence is far too long to be read aloud in one short clip.", "這個軟體很好用"),
            ("Run!", "跑！")]
    (folder / "eng-cmn.tsv").write_text(
        "".join(f"{en}\t{zh}\tCC-BY 2.0 (France) Attribution: tatoeba.org\n" for en, zh in rows),
        encoding="utf-8")
    english = read_sentences(tmp_path, "tatoeba-en", limit=4)
    assert sorted(english) == ["Call Tom.", "Hi.", "Run!", "Wait!"]  # no digits, none too long
    assert read_sentences(tmp_path, "tatoeba-en", limit=4, seed=1) != english  # seeded order
    chinese = read_sentences(tmp_path, "tatoeba-zh", limit=6, max_characters=7)
    assert sorted(chinese) == sorted(["嗨。", "你好。", "给汤姆打电话。", "等一下！",
                                      "这个软体很好用", "跑！"])
    with pytest.raises(DataError, match="has 4 speakable sentences of at most 60 characters, "
                                        "fewer than the 5 asked for"):
        read_sentences(tmp_path, "tatoeba-en", limit=5)
    with pytest.raises(DataError, match="unknown sentence source 'imdb'; the sources are: "
                                        "tatoeba-en, tatoeba-zh, lcsts"):
        read_sentences(tmp_path, "imdb")
    with pytest.raises(DataError, match=r"lcsts_zh/train_2k\.tsv does not exist"):
        read_sentences(tmp_path, "lcsts")


ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed "
                                  "(apt-get install espeak-ng); the Makefile installs it")


@needs_espeak
def test_synthesized_speech_is_cached_with_its_transcripts_and_read_back(tmp_path,
                                                                         monkeypatch):
    sentences = ["The cat sat on the mat.", "Good morning."]
    done = []
    folder = synthesize_speech(sentences, tmp_path, language="en", variants=2,
                               progress=lambda n, total: done.append((n, total)))
    assert folder.parent == tmp_path and folder.name.startswith("espeak-en-")
    assert done[-1] == (4, 4)
    rows = [json.loads(line) for line in (folder / "transcripts.jsonl").read_text().splitlines()]
    assert [r["transcript"] for r in rows] == sentences * 2
    assert all(r["voice"] in speech.VOICES["en"] and r["speaker"] == r["voice"]
               and r["speed"] in speech.SPEEDS and r["pitch"] in speech.PITCHES for r in rows)
    assert json.loads((folder / "dataset.json").read_text())["files"] == 4
    utterances = read_speech_folder(folder)
    assert [u.transcript for u in utterances] == sentences * 2
    for utterance in utterances:
        assert utterance.sampling_rate == 16000 and utterance.language == "en"
        # Speech, not silence: about a second of audio with real energy in it.
        assert 0.4 < utterance.duration < 4.0 and np.abs(utterance.audio).max() > 0.05
    # espeak-ng writes 22,050 Hz; as stored when no rate is asked for.
    assert read_speech_folder(folder, sampling_rate=None)[0].sampling_rate == 22050
    # The same request reuses the folder without running espeak-ng; another builds anew.
    monkeypatch.setattr(speech, "_speak", lambda *a: pytest.fail("espeak-ng ran again"))
    assert synthesize_speech(sentences, tmp_path, language="en", variants=2) == folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@needs_espeak
def test_mandarin_voices_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    folder = synthesize_speech(["今天天气很好。"], tmp_path, language="zh", voices=["cmn+f3"],
                               speeds=[150], pitches=[60])
    (utterance,) = read_speech_folder(folder)
    assert (utterance.transcript, utterance.speaker, utterance.language) == \
        ("今天天气很好。", "cmn+f3", "zh")
    assert np.abs(utterance.audio).max() > 0.05
    with pytest.raises(DataError, match="espeak-ng has no voice 'xx'"):
        synthesize_speech(["hi"], tmp_path, voices=["xx"])
    with pytest.raises(DataError, match="has no voice variant 'nope'"):
        synthesize_speech(["hi"], tmp_path, voices=["en-us+nope"])
    with pytest.raises(DataError, match="sentence 1 is empty"):
        synthesize_speech(["hi", "  "], tmp_path)
    with pytest.raises(DataError, match="speeds must be whole numbers from 80 to 450"):
        synthesize_speech(["hi"], tmp_path, speeds=[10])

    def fail(espeak, row, folder):
        raise DataError("espeak-ng broke")

    monkeypatch.setattr(speech, "_speak", fail)
    with pytest.raises(DataError, match="espeak-ng broke"):
        synthesize_speech(["another sentence"], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_without_espeak_ng_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng is not installed; install it "
                                        r"\(Debian/Ubuntu: apt-get install espeak-ng\)"):
        synthesize_speech(["hi"], tmp_path)


def test_a_speech_folder_with_a_bad_line_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"transcripts\.jsonl does not exist"):
        read_speech_folder(tmp_path)
    (tmp_path / "transcripts.jsonl").write_text('{"id": "a", "audio": "a.wav"}\n')
    with pytest.raises(DataError, match=r"transcripts\.jsonl:1 must be an object with string "
                                        "fields id, audio, transcript, speaker, language"):
        read_speech_folder(tmp_path)
    (tmp_path / "transcripts.jsonl").write_text(json.dumps(
        {"id": "a", "audio": "a.wav", "transcript": "hi", "speaker": "s", "language": "en"}))
    with pytest.raises(DataError, match=r"a\.wav does not exist"):
        read_speech_folder(tmp_path)
