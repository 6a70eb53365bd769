"""Candidate generation: SAPS substitutions, random structure search, compositions.

Every generator is a small dataclass with one streaming verb (``generate``) that yields
:class:`~gnomon.storage.Candidate` records carrying their provenance; see
:mod:`.saps`, :mod:`.random_search` (with :mod:`.airss`), :mod:`.compositions`,
:mod:`.templates` for where templates come from, :mod:`.streaming` for chunking, sharding and
seeds, and :mod:`.candidate_io` for candidate files.

The package imports none of them: reading a candidate file (``model predict``, ``relax``) must
not wait for the generators' structure matcher and SciPy. Import each from its module.
"""
