"""Checkpoints: atomic writes, and one clear error for a missing, truncated or foreign file."""

import pytest
import torch

from ws3d.checkpoint import (
    git_revision,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trained_by,
    weights_digest,
)


def test_round_trip_and_no_temporary_left(tmp_path):
    payload = {"model": {"w": torch.arange(3.0)}, "step": 7, "config": {"run_dir": "x"}, "rng": rng_state()}
    save_checkpoint(tmp_path / "last.pt", payload)
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["step"] == 7 and torch.equal(back["model"]["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    set_rng_state(back["rng"])
    first = torch.rand(3)
    set_rng_state(back["rng"])
    assert torch.equal(torch.rand(3), first)


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "step": 1, "config": {}})

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"model": {}, "step": 2, "config": {}})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "gone.pt")
    save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.zeros(1000)}, "step": 1, "config": {}})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt: not a readable checkpoint, corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt: not a ws3d checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_trained_by_names_every_revision_a_resumed_run_went_through():
    assert trained_by(None, "b") == "b"  # a fresh run
    assert trained_by({"git": "a"}, "a") == "a"  # resumed by the same code
    assert trained_by({"git": "a"}, "b") == "a then b"
    assert trained_by({"git": "a then b"}, "b") == "a then b"
    assert trained_by({"git": "a then b"}, "a") == "a then b then a"
    assert trained_by({}, "b") == "unknown then b"  # a checkpoint from before runs recorded it


def test_git_revision_is_this_checkout():
    revision = git_revision()  # the tests run from a git clone (CI clones main)
    commit = revision.removesuffix("+dirty")
    assert len(commit) == 40 and int(commit, 16) >= 0, revision


def test_weights_digest_sees_every_bit_name_and_dtype():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor(3)}
    same = {"b": torch.tensor(3), "a": torch.arange(6.0).reshape(2, 3).t().contiguous().t()}  # order, strides
    assert weights_digest(state) == weights_digest(same)
    nudged = {**state, "a": state["a"].clone()}
    nudged["a"][1, 2] = torch.nextafter(nudged["a"][1, 2], torch.tensor(10.0))  # one ulp
    assert weights_digest(nudged) != weights_digest(state)
    assert weights_digest({**state, "a": state["a"].double()}) != weights_digest(state)
    assert weights_digest({"c": state["a"], "b": state["b"]}) != weights_digest(state)
    assert weights_digest({**state, "a": state["a"].reshape(3, 2)}) != weights_digest(state)
