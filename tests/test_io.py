"""Atomic writes: a failure mid-write leaves the old file (or folder) untouched."""

from __future__ import annotations

import pytest

from wxb.io import atomic_dir, atomic_save, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text() == '{\n  "x": 2\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_crash_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "weights.bin"
    atomic_write_text(target, "good")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        atomic_save(target, crash)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_atomic_dir_commits_whole_folders_only(tmp_path):
    target = tmp_path / "checkpoint-1"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]
