"""Frames of a trajectory: the logarithmic clock and the thinning keep first and last."""

from __future__ import annotations

import numpy as np

from gnomon.dft.frames import Frame, FrameRecorder, thin


def _offer_all(recorder: FrameRecorder, last: int) -> list[Frame]:
    cell, species = np.eye(3) * 4.0, ["Na", "Cl"]
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    for step in range(last):
        recorder.offer(step, -2.0 * (step + 1), cell, species, frac + 0.001 * step)
    return recorder.finish(last, -2.0 * (last + 1), cell, species, frac + 0.001 * last)


def test_the_first_the_last_and_spread_intermediates_are_kept():
    frames = _offer_all(FrameRecorder(max_frames=4), last=150)
    assert len(frames) == 4 and frames[0].step == 0 and frames[-1].step == 150
    assert all(a.step < b.step for a, b in zip(frames, frames[1:], strict=False))
    assert frames[-1].energy_per_atom == -151.0  # -2 * 151 eV over 2 atoms


def test_a_short_relaxation_keeps_what_it_has_and_a_frame_survives_json():
    frames = _offer_all(FrameRecorder(max_frames=4), last=1)
    assert [f.step for f in frames] == [0, 1]
    again = Frame.from_doc(frames[1].to_doc())
    assert again == frames[1]
    assert again.as_structure().composition.reduced_formula == "NaCl"
    assert np.allclose(again.as_structure().frac_coords[1], [0.501, 0.501, 0.501])


def test_thinning_never_drops_the_ends():
    frames = [Frame(s, 0.0, {}) for s in (0, 1, 2, 4, 8, 16, 32, 64, 100)]
    for k in range(2, 9):
        kept = thin(frames, k)
        assert kept[0].step == 0 and kept[-1].step == 100 and len(kept) <= k
