"""What would stop a campaign, found before it runs: ``gnomon campaign validate``.

A campaign that fails in round 2 because pw.x is not on PATH, or because the engine was given
an option it does not take, has wasted a round of screening and a queue wait. Every check
here only reads: it builds the engines and asks them what they need (``RelaxEngine.check``)
on one atom of each of the campaign's elements, asks the dispatcher whether it can submit,
and compares the config with a stored campaign of the same name, the way ``campaign run``
does before its first round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Lattice, Structure

from gnomon.config import CampaignConfig, Settings, differs_from_stored
from gnomon.dft import engine as dft_engine
from gnomon.dft.dispatcher import make_dispatcher
from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import DispatchError, InputError
from gnomon.models import pretrained

#: Dispatchers whose ``check`` writes (jobflow-remote writes its project file): not run here.
WRITING_CHECKS = frozenset({"jobflow-remote"})


@dataclass
class Preflight:
    """``problems`` would stop the campaign; ``notes`` are worth knowing but stop nothing."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def preflight(
    config: CampaignConfig, settings: Settings, stored: dict[str, Any] | None
) -> Preflight:
    """Every check ``campaign run`` makes before it starts, and the engines' own checks it
    makes when it first relaxes; ``stored`` is the config of a stored campaign of this name."""
    out = Preflight()
    atoms = _one_atom_each(config.elements)
    engine = _engine(out, "engine", config.engine.name, config.engine.options, settings, atoms)
    if config.staged:
        mlip = _engine(
            out, "mlip_engine", config.mlip_engine.name, config.mlip_engine.options, settings, atoms
        )
        if engine is not None and mlip is not None and mlip.scheme == engine.scheme:
            out.problems.append(
                f"stages: mlip_engine {config.mlip_engine.name!r} and engine "
                f"{config.engine.name!r} share the scheme {engine.scheme}; each stage needs a "
                "hull of its own"
            )
    _dispatcher(out, config, settings)
    if stored is not None and differs_from_stored(stored, config):
        out.problems.append(
            f"name: campaign {config.name!r} exists with a different configuration; resume it "
            f"with `gnomon campaign resume {config.name}` or give the new one another name"
        )
    if config.model.start_from == "pretrained" and not pretrained.available():
        out.notes.append(
            "model.start_from: no pretrained model ships with this install; round 0 is "
            "screened by the newest model of the scheme, or not at all"
        )
    if config.mlip_calibration is not None and not config.mlip_calibration.is_file():
        out.problems.append(f"mlip_calibration: no such file {config.mlip_calibration}")
    return out


def _engine(
    out: Preflight,
    key: str,
    name: str,
    options: dict[str, Any],
    settings: Settings,
    atoms: list[Structure],
) -> RelaxEngine | None:
    """The engine ``key`` names, or None with the reason recorded."""
    try:
        engine = dft_engine.make_engine(name, settings, **options)
    except (TypeError, ValueError) as exc:
        out.problems.append(f"{key}.options: {_first_line(exc)}")
        return None
    try:
        engine.check(atoms)
    except InputError as exc:
        out.problems.append(f"{key}: {_first_line(exc)}")
    return engine


def _dispatcher(out: Preflight, config: CampaignConfig, settings: Settings) -> None:
    name = config.dispatch.name
    if name in WRITING_CHECKS:
        out.notes.append(f"dispatch: {name} is checked when the first relaxation is submitted")
        return
    try:
        make_dispatcher(name, settings, workers=config.dispatch.workers).check()
    except (DispatchError, TypeError, ValueError) as exc:
        out.problems.append(f"dispatch: {_first_line(exc)}")


def _one_atom_each(elements: list[str]) -> list[Structure]:
    """One atom of each element, for the engines' checks (pseudopotentials, coverage)."""
    return [Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]]) for el in elements]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
