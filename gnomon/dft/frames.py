"""A few frames of a relaxation's trajectory, kept compactly: what screening sees in between.

A screen judges unrelaxed cells but learns from relaxed ones unless it is shown the way
between (Matbench Discovery's IS2RE task; GNoME's later models train on intermediate
geometries). Every relaxation passes through such geometries for free, so the relaxers keep a
few of them: the first step, up to ``max_frames - 2`` intermediates spread over the run on a
logarithmic clock (most of the geometry changes in the first steps), and the last. Each frame
is a geometry and its energy at that step; a trainer pairs it with the relaxation's final
energy. A frame's structure is a minimal pymatgen dict (lattice matrix, species, fractional
coordinates rounded to 1e-5), readable by ``Structure.from_dict``: about a tenth of
``Structure.as_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

DEFAULT_MAX_FRAMES = 4


def compact_structure(lattice: np.ndarray, species: list[str], frac: np.ndarray) -> dict[str, Any]:
    """A Structure dict with only what ``Structure.from_dict`` needs."""
    return {
        "lattice": {"matrix": np.round(np.asarray(lattice, dtype=float), 5).tolist()},
        "sites": [
            {"species": [{"element": el, "occu": 1}], "abc": [round(float(x), 5) for x in abc]}
            for el, abc in zip(species, np.asarray(frac, dtype=float), strict=True)
        ],
    }


@dataclass(frozen=True)
class Frame:
    """One geometry of a relaxation and its energy per atom at that step."""

    step: int
    energy_per_atom: float
    structure: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "energy_per_atom": round(self.energy_per_atom, 6),
            "structure": self.structure,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Frame:
        return cls(int(doc["step"]), float(doc["energy_per_atom"]), doc["structure"])

    def as_structure(self) -> Structure:
        return Structure.from_dict(self.structure)


def _on_clock(step: int) -> bool:
    """Steps 0, 1, 2, 4, 8, ...: the logarithmic clock frames are taken on."""
    return step == 0 or (step & (step - 1)) == 0


@dataclass
class FrameRecorder:
    """Frames of one relaxation as it runs: offered at every step, kept on the clock, thinned
    to ``max_frames`` (the first, the last and evenly spread ones between) when it ends."""

    max_frames: int = DEFAULT_MAX_FRAMES
    frames: list[Frame] = field(default_factory=list)

    def offer(
        self, step: int, energy: float, lattice: np.ndarray, species: list[str], frac: np.ndarray
    ) -> None:
        if self.max_frames > 0 and _on_clock(step):
            self.frames.append(
                Frame(step, energy / len(species), compact_structure(lattice, species, frac))
            )

    def finish(
        self, step: int, energy: float, lattice: np.ndarray, species: list[str], frac: np.ndarray
    ) -> list[Frame]:
        """The kept frames, the final geometry (at ``step``) last."""
        if self.max_frames <= 0:
            return []
        if not self.frames or self.frames[-1].step != step:
            self.frames.append(
                Frame(step, energy / len(species), compact_structure(lattice, species, frac))
            )
        return thin(self.frames, self.max_frames)


def thin(frames: list[Frame], max_frames: int) -> list[Frame]:
    """At most ``max_frames`` of ``frames``: the first, the last, and evenly spread ones."""
    if len(frames) <= max_frames:
        return list(frames)
    if max_frames == 1:
        return [frames[-1]]
    picks = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def frames_from_steps(steps: Sequence[Any], max_frames: int = DEFAULT_MAX_FRAMES) -> list[Frame]:
    """The frames of a finished trajectory given as ionic steps that carry a ``structure`` and
    an ``energy`` (atomate2's ``IonicStep``): the same clock and thinning as a running one."""
    recorder = FrameRecorder(max_frames)
    usable = [
        (k, s)
        for k, s in enumerate(steps)
        if getattr(s, "structure", None) is not None and getattr(s, "energy", None) is not None
    ]
    for k, step in usable[:-1]:
        _offer_structure(recorder, k, step.energy, step.structure)
    if not usable:
        return []
    k, last = usable[-1]
    structure = last.structure
    return recorder.finish(
        k,
        float(last.energy),
        structure.lattice.matrix,
        [site.specie.symbol for site in structure],
        structure.frac_coords,
    )


def _offer_structure(
    recorder: FrameRecorder, step: int, energy: float, structure: Structure
) -> None:
    recorder.offer(
        step,
        float(energy),
        structure.lattice.matrix,
        [site.specie.symbol for site in structure],
        structure.frac_coords,
    )
