"""coord_str interchange: canvases of another size land where they were drawn; export round trips."""

import json

import numpy as np
import pytest

from motion_i2v_core.motion.coord_str import canvas_tracks, tracks_to_coord_str
from motion_i2v_core.motion.hints import parse_coord_str


def test_a_square_canvas_over_a_wide_image_lands_where_it_was_drawn():
    # Drawn on a 512x512 canvas showing a 512x320 image stretched: canvas (256, 400) is image (256, 250).
    coord = json.dumps([[{"x": 256, "y": 400}, {"x": 300, "y": 256}]])
    tracks, notes = canvas_tracks(coord, 512, 320, 512, 512)
    assert np.allclose(tracks[0], [[256, 250], [300, 160]], atol=1.0)
    assert any("512x512 canvas" in n and "512x320 image" in n for n in notes)
    # Without a canvas size the coordinates are image pixels: the same point is 150 px lower.
    same, quiet = canvas_tracks(coord, 512, 320)
    assert np.allclose(same[0][0], [256, 400]) and any("outside" in n for n in quiet)


def test_points_outside_the_image_are_each_reported():
    coord = json.dumps([{"x": -10, "y": 5}, {"x": 20, "y": 30}, {"x": 700, "y": 400}])
    _, notes = canvas_tracks(coord, 640, 360)
    outside = [n for n in notes if "outside" in n]
    assert len(outside) == 2 and "point 0" in outside[0] and "point 2" in outside[1]
    assert "clamped to (0.0, 5.0)" in outside[0]


def test_export_round_trips_through_the_coord_str_reader_and_scales():
    tracks = [np.array([[10.0, 20.0], [50.0, 60.0], [90.0, 20.0]]), np.array([[5.0, 5.0]])]
    text = tracks_to_coord_str(tracks, 128, 64)
    back = parse_coord_str(text)
    assert len(back) == 2 and np.allclose(back[0], tracks[0]) and np.allclose(back[1], tracks[1])
    doubled = parse_coord_str(tracks_to_coord_str(tracks, 128, 64, 256, 128))
    assert np.allclose(doubled[0], tracks[0] * 2)
    # Resampled to one point per frame (WanTrackToVideo reads one point per frame); the ends stay.
    per_frame = parse_coord_str(tracks_to_coord_str(tracks, 128, 64, points_per_track=16))
    assert per_frame[0].shape == (16, 2) and np.allclose(per_frame[0][[0, -1]], tracks[0][[0, -1]])
    assert per_frame[1].shape == (16, 2) and np.allclose(per_frame[1], 5.0)


def test_export_then_import_on_another_canvas_is_within_a_pixel():
    tracks = [np.array([[100.3, 200.7], [400.2, 50.9]])]
    text = tracks_to_coord_str(tracks, 512, 320, 512, 512)  # for a 512x512 canvas
    back, _ = canvas_tracks(text, 512, 320, 512, 512)
    assert np.abs(back[0] - tracks[0]).max() < 1.0


def test_bad_canvas_size_is_named():
    with pytest.raises(ValueError, match="canvas"):
        canvas_tracks("[]", 64, 64, -5, 10)
