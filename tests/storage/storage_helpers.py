"""A small campaign-like database for the storage tests: references and compounds of Li-Mn-O,
each with its candidate and calculation, ingested through the hull engine."""

from __future__ import annotations

import random

from pymatgen.core import Lattice, Structure

from gnomon.pipeline.thermo.entries import make_entry
from gnomon.pipeline.thermo.hull import HullEngine
from gnomon.storage import CalcState, Calculation, Candidate, Entry, open_repository

SCHEME = "mlip-chgnet-0.3.0"
REFS = {"Li": -1.9, "Mn": -9.0, "O": -4.9}


def grid_structure(species: list[str]) -> Structure:
    k = 1
    while k**3 < len(species):
        k += 1
    sites = [[i / k, j / k, m / k] for i in range(k) for j in range(k) for m in range(k)]
    return Structure(Lattice.cubic(2.2 * k), species, sites[: len(species)])


def fill(url: str, seed: int = 3, n: int = 20) -> list[Entry]:
    """References and compounds of Li-Mn-O, each with its candidate and calculation, ingested
    through the hull engine as a campaign stores them."""
    rng = random.Random(seed)
    species_lists = [[el, el] for el in REFS]
    for _ in range(n):
        species_lists.append([el for el in REFS for _ in range(rng.randint(0, 2))] or ["Li", "O"])
    repo = open_repository(url)
    entries = []
    try:
        for i, species in enumerate(species_lists):
            structure = grid_structure(species)
            cand = Candidate(id=f"cand-{i}", structure=structure.as_dict(),
                             formula=structure.composition.formula,
                             reduced_formula=structure.composition.reduced_formula,
                             chemsys=structure.composition.chemical_system,
                             nsites=len(structure), generator="test")
            energy = sum(REFS[el] for el in species) + rng.uniform(-0.8, 0.3) * len(species)
            entry = make_entry(None, energy, SCHEME, structure=structure,
                               candidate_id=cand.id, calculation_id=f"calc-{i}")
            calc = Calculation(id=f"calc-{i}", candidate_id=cand.id, engine="mlip",
                               scheme=SCHEME, settings_hash="h", state=CalcState.done,
                               entry_id=entry.id)
            repo.add_candidates([cand])
            repo.put([calc])
            entries.append(entry)
        HullEngine(repo).ingest(entries)
    finally:
        repo.close()
    return entries
