"""Record types: what they normalise, so stored data reads back the way people expect."""

from __future__ import annotations

import pytest

from gnomon.storage import Entry
from gnomon.storage.documents import cell_formula


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("Li3 Mn1 O3", "Li3MnO3"),
        ("Li3Mn1O3", "Li3MnO3"),
        ("Li1Mn2O4", "LiMn2O4"),
        ("Li3", "Li3"),
        ("Li1", "Li"),
        ("Mn10O1", "Mn10O"),
        ("C12H1", "C12H"),
        ("Li0.5O1", "Li0.5O"),
        ("Li1.5O1", "Li1.5O"),
    ],
)
def test_cell_formula_drops_spaces_and_amounts_of_one_only(written, read):
    assert cell_formula(written) == read


def test_entries_stored_with_amounts_of_one_read_back_readable(repo):
    """Databases written before the normalisation hold "Li3Mn1O3": they still load."""
    entry = Entry(id="e1", scheme="s", formula="Li3MnO3", reduced_formula="Li3MnO3",
                chemsys="Li-Mn-O", elements=["Li", "Mn", "O"], nsites=7,
                composition={"Li": 3.0, "Mn": 1.0, "O": 3.0}, energy=-7.0,
                uncorrected_energy=-7.0, energy_per_atom=-1.0)
    old = entry.model_copy(update={"formula": "Li3Mn1O3"})  # as such databases hold it
    repo.upsert("entries", [old])
    assert next(repo.find("entries"))["formula"] == "Li3Mn1O3"
    assert repo.get(Entry, "e1") == entry
