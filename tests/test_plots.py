"""Training curves draw every loss term the trainer logs."""

import json

from ws3d.plots import training_curves


def test_training_curves_draw_every_logged_loss_term(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 3.0 / s, "l_h": 1.0 / s, "l_uv": 0.5, "l_z_mv": 0.2 / s, "lr": 5e-4} for s in (1, 2, 3)]
    rows.append({"step": 3, "val": {"mpjpe": 100.0, "n_mpjpe": 90.0, "p_mpjpe": 70.0, "px2d": 1.5}})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn = training_curves(log, tmp_path / "training.png")
    assert drawn == ["loss", "l_h", "l_uv", "l_z_mv"]  # the depth loss too; not the lr
    assert (tmp_path / "training.png").stat().st_size > 0
