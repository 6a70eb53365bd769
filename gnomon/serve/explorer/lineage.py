"""Where a phase came from: its lineage, from the generated candidate to the stored energy.

Every record on the way is in the database and points to the one before it (DESIGN.md: an
entry names its candidate and calculation; a DFT entry started from an ML-relaxed structure
names that entry, ``Entry.parent_entry_id``, and its candidate the one relaxed before,
``Candidate.parent_candidate_id``/``parent_entry_id``). The page lists the chain oldest first:
for each fidelity stage the candidate (generator, SAPS template and substitution or the
random-search composition, seed), the screen's predictions, the calculation (engine,
dispatcher, state, code version) and the entry it produced (scheme, energy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnomon.serve.explorer.templates import fmt
from gnomon.storage import Calculation, Candidate, Entry, Prediction, Repository

MAX_STAGES = 6  # a chain longer than this is cut (a loop in bad data cannot hang a page)


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    phase: str | None = None  # a phase id the value links to


@dataclass
class Step:
    kind: str  # candidate, screen, calculation, entry
    title: str
    facts: list[Fact] = field(default_factory=list)

    def add(self, label: str, value: object, phase: str | None = None) -> None:
        if value is not None and value != "" and value != {}:
            self.facts.append(Fact(label, value if isinstance(value, str) else fmt(value), phase))


def _template(repo: Repository, template_id: str | None) -> tuple[str | None, str | None]:
    """(text, phase id) of a SAPS template: ``entry:<id>`` is a stored phase, linked."""
    if not template_id:
        return None, None
    kind, _, ref = template_id.partition(":")
    if kind == "entry" and ref and repo.get(Entry, ref) is not None:
        entry = repo.get(Entry, ref)
        return f"{entry.reduced_formula} ({ref})", ref
    return template_id, None


def candidate_step(repo: Repository, cand: Candidate) -> Step:
    step = Step("candidate", f"candidate {cand.id}")
    step.add("generator", f"{cand.generator} {cand.generator_version}".strip())
    text, phase = _template(repo, cand.template_id)
    step.add("SAPS template", text, phase)
    if cand.substitution:
        step.add("substitution", ", ".join(f"{a} → {b}" for a, b in cand.substitution.items()))
    step.add("replaced fraction", cand.replaced_fraction)
    extra = cand.extra or {}
    step.add("template space group", extra.get("template_spacegroup"))
    if cand.generator.startswith("random"):
        step.add("random-search composition", cand.reduced_formula)
        step.add("space group drawn", extra.get("space_group"))
    if cand.generator == "known":
        step.add("known phase", extra.get("name"))
        step.add("published in", extra.get("source"))
    step.add("cell formula", cand.formula)
    step.add("seed", cand.seed)
    step.add("campaign, round", _campaign_round(cand.campaign, cand.round))
    step.add("created", cand.created_at.strftime("%Y-%m-%d %H:%M UTC"))
    return step


def screen_step(predictions: list[Prediction]) -> Step | None:
    if not predictions:
        return None
    step = Step("screen", "screened by the model ensemble")
    for p in sorted(predictions, key=lambda p: p.created_at):
        e_hull = "" if p.e_above_hull is None else f", E above hull {fmt(p.e_above_hull, 3)}"
        step.add(p.model_version,
                 f"{fmt(p.energy_per_atom, 3)} ± {fmt(p.sigma, 3)} eV/atom{e_hull} ({p.scheme})")
    return step


def calculation_step(calc: Calculation) -> Step:
    step = Step("calculation", f"calculation {calc.id}")
    step.add("engine", calc.engine)
    step.add("state", calc.state.value)
    step.add("dispatcher", calc.dispatcher)
    step.add("batch job", calc.batch_id)
    step.add("attempts", calc.attempts)
    task = calc.task_doc or {}
    step.add("code", task.get("code"))
    step.add("converged", task.get("converged"))
    step.add("ionic steps", task.get("n_ionic_steps"))
    wall = task.get("walltime_s")
    step.add("wall time (s)", fmt(float(wall), 1) if isinstance(wall, int | float) else None)
    step.add("failure", calc.failure_reason)
    return step


def entry_step(entry: Entry, current: str) -> Step:
    title = "this entry" if entry.id == current else f"entry {entry.id}"
    step = Step("entry", f"{title} ({entry.scheme})")
    step.add("entry", entry.id, None if entry.id == current else entry.id)
    step.add("energy scheme", entry.scheme)
    step.add("energy (eV/atom)", fmt(entry.energy_per_atom, 4))
    step.add("code version", entry.code_version)
    step.add("source", entry.source)
    step.add("inputs hash", entry.inputs_hash)
    step.add("campaign, round", _campaign_round(entry.campaign, entry.round))
    return step


def _campaign_round(campaign: str | None, index: int | None) -> str | None:
    if campaign is None:
        return None
    return campaign if index is None else f"{campaign}, round {index}"


def _parent(repo: Repository, entry: Entry, cand: Candidate | None) -> Entry | None:
    parent_id = entry.parent_entry_id or (cand.parent_entry_id if cand else None)
    return repo.get(Entry, parent_id) if parent_id and parent_id != entry.id else None


def lineage(repo: Repository, entry: Entry) -> list[Step]:
    """The steps that made ``entry``, oldest first (empty for an imported energy with no
    candidate behind it: there is nothing but the entry)."""
    chain: list[list[Step]] = []
    seen: set[str] = set()
    current: Entry | None = entry
    while current is not None and current.id not in seen and len(chain) < MAX_STAGES:
        seen.add(current.id)
        cand = repo.get(Candidate, current.candidate_id) if current.candidate_id else None
        steps = []
        if cand is not None:
            steps.append(candidate_step(repo, cand))
            screen = screen_step(list(repo.query(Prediction, {"candidate_id": cand.id})))
            steps += [screen] if screen else []
        calc = repo.get(Calculation, current.calculation_id) if current.calculation_id else None
        steps += [calculation_step(calc)] if calc else []
        steps.append(entry_step(current, entry.id))
        chain.append(steps)
        current = _parent(repo, current, cand)
    if len(chain) == 1 and len(chain[0]) == 1:
        return []
    return [step for stage in reversed(chain) for step in stage]
