"""Candidate generation: SAPS substitutions, random structure search, compositions.

Every generator is a small dataclass with one streaming verb (``generate``) that yields
:class:`~gnomon.storage.Candidate` records carrying their provenance; see
:mod:`.saps`, :mod:`.random_search` (with :mod:`.airss`), :mod:`.compositions`,
:mod:`.templates` for where templates come from, :mod:`.streaming` for chunking, sharding and
seeds, and :mod:`.candidate_io` for candidate files.
"""

from __future__ import annotations

from gnomon.pipeline.generation.candidate_io import (
    CandidateFileError,
    read_candidates,
    write_candidates,
)
from gnomon.pipeline.generation.compositions import (
    BalanceMode,
    CompositionError,
    CompositionGenerator,
    known_formulas,
)
from gnomon.pipeline.generation.random_search import RandomSearch, RandomSearchError
from gnomon.pipeline.generation.saps import SAPSGenerator
from gnomon.pipeline.generation.streaming import chunked, derive_seed, parallel_map, shard
from gnomon.pipeline.generation.templates import (
    SkippedTemplate,
    Template,
    prototype_templates,
    templates_from_files,
    templates_from_repository,
)

__all__ = [
    "BalanceMode",
    "CandidateFileError",
    "CompositionError",
    "CompositionGenerator",
    "RandomSearch",
    "RandomSearchError",
    "SAPSGenerator",
    "SkippedTemplate",
    "Template",
    "chunked",
    "derive_seed",
    "known_formulas",
    "parallel_map",
    "prototype_templates",
    "read_candidates",
    "shard",
    "templates_from_files",
    "templates_from_repository",
    "write_candidates",
]
