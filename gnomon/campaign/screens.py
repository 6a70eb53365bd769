"""Screens for the generation funnel, built from a model ensemble.

:class:`~gnomon.pipeline.generation.funnel.Funnel` takes its screen as a callable (a chunk of
candidates in, one verdict per candidate out) so that the pipeline never imports the models;
the two screens a campaign hands it live here, above both:

- :class:`HullScreen`: the streaming round's screen, against the scheme's stored hull; it
  stores the predictions of the candidates that pass together with them;
- :func:`ensemble_screen`: a plain energy-per-atom bound, as the funnel benchmarks use it.

Example::

    funnel = Funnel(Deduplicator(repository=repo, seen=SQLiteSeenStore(tmp / "seen.db")),
                    screen=ensemble_screen(ensemble, max_energy_per_atom=-5.0),
                    store=repo.add_candidates)
    counts = funnel.run(saps.generate(templates))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gnomon.models.ensemble import TTA, Ensemble
from gnomon.models.screening import Screener, hull_function
from gnomon.pipeline.generation.funnel import Screen, Verdict
from gnomon.storage import Candidate, ModelVersion, Prediction, Repository


class HullScreen:
    """The funnel's screen against the scheme's stored hull: a verdict per candidate, and the
    predictions of the ones that pass, stored together with them (:meth:`store`).

    With ``first_member_margin`` (eV/atom) the screen is a cascade: the ensemble's first
    member alone judges every candidate first, and one whose e_above_hull by that member lies
    more than the margin above the threshold fails there; only the rest meet the whole
    ensemble, whose mean minus σ decides as without the cascade. Most of a large round lies
    far above any useful threshold, so most candidates cost one member instead of K. A
    candidate the cascade fails would have passed only if the first member's energy exceeds
    the ensemble's mean minus σ by more than the margin; ``bench/screening.py --part
    cascade`` measures how often that happens on the world's validation systems."""

    def __init__(self, repo: Repository, ensemble: Ensemble, record: ModelVersion, scheme: str,
                 e_above_hull: float, *, tta: TTA | None = None, campaign: str | None = None,
                 round: int | None = None, first_member_margin: float | None = None) -> None:
        self.repo = repo
        self.ensemble = ensemble
        self.record = record
        self.scheme = scheme
        self.threshold = e_above_hull
        self.campaign = campaign
        self.round = round
        self.margin = first_member_margin
        self.first_member_only = 0  # candidates the first member alone failed
        self._screener = Screener(ensemble, tta=tta)
        self._first = (Screener(ensemble, tta=tta, members=(0,))
                       if first_member_margin is not None and ensemble.size > 1 else None)
        self._ehull = hull_function(repo, scheme)
        self._pending: dict[str, Prediction] = {}

    def __call__(self, chunk: Sequence[Candidate]) -> list[Verdict]:
        verdicts: list[Verdict] = ["not predicted"] * len(chunk)
        self._pending.clear()  # what did not pass in the last chunk is never stored
        todo: Iterable[int] = range(len(chunk))
        if self._first is not None:
            todo = self._first_member_pass(chunk, verdicts)
        for results in self._screener.stream((i, self._input(chunk[i])) for i in todo):
            for r in results:
                if r.rejected is not None:
                    verdicts[r.key] = r.rejected
                    continue
                verdicts[r.key] = self._judge(chunk[r.key], r.energy_per_atom, r.sigma)
        return verdicts

    def _input(self, c: Candidate) -> Any:
        return c.formula if self.ensemble.kind == "composition" else c.structure

    def _first_member_pass(self, chunk: Sequence[Candidate], verdicts: list[Verdict]) -> list[int]:
        """Judge ``chunk`` by the first member; fill ``verdicts`` of those it settles (failed,
        unscreenable, no hull) and return the indices left for the whole ensemble."""
        assert self._first is not None and self.margin is not None
        left: list[int] = []
        items = ((i, self._input(c)) for i, c in enumerate(chunk))
        for results in self._first.stream(items):
            for r in results:
                c = chunk[r.key]
                if r.rejected is not None:
                    verdicts[r.key] = r.rejected
                elif (e_hull := self._ehull(c.formula, r.energy_per_atom)) is None:
                    verdicts[r.key] = f"no {self.scheme} hull for {c.chemsys}"
                elif e_hull - self.margin > self.threshold:
                    verdicts[r.key] = False
                    self.first_member_only += 1
                else:
                    left.append(r.key)
        return sorted(left)

    def _judge(self, c: Candidate, energy_per_atom: float, sigma: float | None) -> Verdict:
        """Whether ``c`` passes (its prediction kept for :meth:`store`), or why it cannot be
        judged."""
        e_hull = self._ehull(c.formula, energy_per_atom)
        if e_hull is None:
            return f"no {self.scheme} hull for {c.chemsys}"
        passes = e_hull - (sigma or 0.0) <= self.threshold
        if passes:
            self._pending[c.id] = Prediction(
                id=Prediction.key(c.id, self.record.id), candidate_id=c.id,
                model_version=self.record.id, scheme=self.scheme,
                energy_per_atom=energy_per_atom, sigma=sigma, e_above_hull=e_hull,
                campaign=self.campaign, round=self.round)
        return passes

    def store(self, passing: list[Candidate]) -> None:
        """The chunk's passing candidates, then their predictions: a crash between the two
        leaves candidates without predictions, which the round's screen step predicts."""
        self.repo.add_candidates(passing)
        self.repo.upsert("predictions", [self._pending.pop(c.id) for c in passing])


def ensemble_screen(ensemble: Ensemble, max_energy_per_atom: float, *, tta: TTA | None = None,
                    batch_size: int | None = None, use_sigma: bool = True) -> Screen:
    """A screen from a model ensemble: a candidate passes when its predicted energy per atom
    (minus one σ with ``use_sigma``, the optimistic bound GNoME filters on) is at most
    ``max_energy_per_atom``; a structure the featurizer rejects gets the rejection reason."""
    screener = Screener(ensemble, batch_size=batch_size, tta=tta)

    def screen(chunk: Sequence[Candidate]) -> list[Verdict]:
        verdicts: list[Verdict] = [False] * len(chunk)
        for results in screener.stream((i, c.structure) for i, c in enumerate(chunk)):
            for r in results:
                if r.rejected is not None:
                    verdicts[r.key] = r.rejected
                else:
                    sigma = (r.sigma or 0.0) if use_sigma else 0.0
                    bound = r.energy_per_atom - sigma
                    verdicts[r.key] = bool(bound <= max_energy_per_atom)
        return verdicts

    return screen
