"""Checkpoints: atomic writes, and one clear error for a missing, truncated or foreign file."""

import pytest
import torch

from ws3d.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


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
