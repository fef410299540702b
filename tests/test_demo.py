from ws3d.demo import run


def test_demo_recovers_geometry_from_noisy_synthetic_maps():
    m = run(people=6, views=4, seed=1)
    assert m["samples"] == 24
    assert m["valid_3d"] == 1.0 and m["valid_alignment"] == 1.0
    # Bounds a factor ~3 above what the default noise gives; a wrong camera, root or
    # rotation convention is off by orders of magnitude.
    assert m["px2d"] < 0.3
    assert m["mpjpe_mm"] < 150.0
    assert m["mv_l1_scale_units"] < 0.1
    assert m["rotation_error_deg"] < 1.5
