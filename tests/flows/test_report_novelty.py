"""The campaign report marks each stable phase the campaign found as new or known, with the AMD
distance to the nearest known phase; the phases it did not find show where they came from."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from gnomon.campaign.reports import write_report
from gnomon.campaign.steps import RoundContext
from gnomon.config import CampaignConfig, Settings
from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage.documents import Candidate

pytestmark = pytest.mark.slow  # amd's numba kernels compile on first use in a fresh environment


def wurtzite(scale: float = 1.0) -> Structure:
    s = Structure(
        Lattice.hexagonal(3.2, 5.2),
        ["Li", "Mn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.375], [2 / 3, 1 / 3, 0.875]],
    )
    s.scale_lattice(s.volume * scale)
    return s


def perovskite() -> Structure:
    return Structure(
        Lattice.cubic(3.9),
        ["Li", "Mn", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def candidate(name: str, s: Structure, generator: str) -> Candidate:
    return Candidate(
        id=name,
        structure=s.as_dict(),
        formula=s.formula.replace(" ", ""),
        reduced_formula=s.composition.reduced_formula,
        chemsys=s.composition.chemical_system,
        nsites=len(s),
        generator=generator,
        campaign="t",
    )


def test_report_shows_novelty_of_each_discovery(tmp_path):
    ctx = RoundContext(
        Settings(home=tmp_path / "home"),
        CampaignConfig(name="t", elements=["Li", "Mn", "O"], engine={"name": "mlip"}),
        0,
    )
    try:
        scheme = ctx.scheme
        structures = {
            "known-LiMnO2": (wurtzite(), "known"),
            "twin": (wurtzite(1.04), "saps"),
            "fresh": (perovskite(), "saps"),
        }
        ctx.repo.put([candidate(name, s, gen) for name, (s, gen) in structures.items()])
        energy = {
            "known-LiMnO2": -6.1,
            "twin": -6.2,
            "fresh": -6.0,
        }  # eV/atom: all but the first on the hull
        HullEngine(ctx.repo).ingest(
            [make_entry(el, -4.0, scheme) for el in ("Li", "Mn", "O2")]
            + [
                make_entry(
                    s.composition,
                    energy[name] * len(s),
                    scheme,
                    structure=s,
                    candidate_id=name,
                    campaign="t",
                )
                for name, (s, _) in structures.items()
            ]
        )
        text = write_report(ctx.repo, ctx.settings, ctx.config).read_text()
    finally:
        ctx.close()
    table = text.split("## Stable phases")[1].split("\n\n")[2].splitlines()
    assert "novelty (AMD to nearest known)" in table[0]
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert set(rows) == {"Li", "Mn", "O2", "LiMnO2", "LiMnO3"}
    assert "known (= LiMnO2" in rows["LiMnO2"]  # the relaxed twin of a shipped phase
    assert "new (AMD" in rows["LiMnO3"] and "to LiMnO2" in rows["LiMnO3"]
    assert all("(imported)" in rows[el] for el in ("Li", "Mn", "O2"))
