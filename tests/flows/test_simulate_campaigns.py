"""Simulated campaigns: the hit rate against the hull before each round, model-guided round 0
from an initial ensemble, fine-tuning round by round, σ-aware picks, seeded reproducibility."""

from __future__ import annotations

import random

import pytest
from pymatgen.core import Composition, Lattice, Structure

from gnomon.campaign.selection import GreedyPolicy, Scored, UncertaintyPolicy
from gnomon.campaign.simulate import Labelled, e_above_known, hit_rate, simulate, true_stable

TINY = {"ensemble_size": 2, "hidden": 8, "layers": 1, "max_epochs": 4, "patience": 2}
REFS = {"Na": -1.0, "Cl": -2.0}  # eV/atom


def _item(key: str, formula: str, formation: float) -> Labelled:
    """A hand-labelled structure whose energy per atom is ``formation`` above the elements."""
    comp = Composition(formula)
    species = [str(el) for el in comp for _ in range(int(comp[el]))]
    coords = [[i / len(species), i / len(species), i / len(species)] for i in range(len(species))]
    s = Structure(Lattice.cubic(3.0 * len(species)), species, coords)
    e = sum(comp.get_atomic_fraction(el) * REFS[str(el)] for el in comp) + formation
    return Labelled(key, s, e, comp.reduced_formula, comp.chemical_system)


def _elements() -> list[Labelled]:
    return [_item(f"ref-{el}", el, 0.0) for el in REFS]


def test_hit_rate_is_judged_against_the_hull_before_the_round():
    # known before the round: Na, Cl and NaCl at -0.8 eV/atom; the tie-line Na-NaCl puts the
    # hull at x_Cl = 1/3 at -0.8 * (1/3) / (1/2) = -0.5333 eV/atom
    known = [*_elements(), _item("nacl-ref", "NaCl", -0.8)]
    picks = [
        _item("deep", "NaCl", -1.0),
        _item("mid", "NaCl", -0.9),
        _item("na2cl-hit", "Na2Cl", -0.55),
        _item("na2cl-miss", "Na2Cl", -0.5),
    ]
    # before the round, deep, mid and na2cl-hit lie below the hull: 3 of 4
    assert hit_rate(known, picks) == pytest.approx(0.75)
    # after it, deep alone is on the hull (mid lies above deep; Na2Cl above the Na-deep
    # tie-line at -0.6667): the definition must not use this one
    assert hit_rate(known + picks, picks) == pytest.approx(0.25)
    # the simulation reports the before-the-round figure for a round that picks all four
    r = simulate(
        _elements() + picks, "random", rounds=1, budget=4, initial=0, reference=[known[-1]]
    )
    assert r.picked[0] and sorted(r.picked[0]) == sorted(p.key for p in picks)
    assert r.hits == [pytest.approx(0.75)]
    # stable against the whole world's hull (pool and reference): deep only
    assert r.n_stable_total == 1 and r.stable_found == [1]


def test_hit_rate_of_a_later_round_counts_the_earlier_rounds_picks():
    # one pick per round from {deep -1.0, mid -0.9} over a known NaCl at -0.8: the first pick is
    # always a hit; the second is a hit only when it is deep (mid lies above deep)
    labels = _elements() + [_item("deep", "NaCl", -1.0), _item("mid", "NaCl", -0.9)]
    seen = set()
    for seed in range(8):
        r = simulate(
            labels,
            "random",
            rounds=2,
            budget=1,
            initial=0,
            seed=seed,
            reference=[_item("nacl-ref", "NaCl", -0.8)],
        )
        first = r.picked[0][0]
        seen.add(first)
        assert r.hits == [1.0, 0.0 if first == "deep" else 1.0]
        assert r.stable_found == [1 if first == "deep" else 0, 1] and r.evaluations == [1, 2]
    assert seen == {"deep", "mid"}  # both orders were exercised


def _world(n_per: int = 8) -> list[Labelled]:
    """A-B structures in four systems, each with a stretched unrelaxed input."""
    rng = random.Random(0)
    refs = {"Li": -1.9, "Na": -1.3, "Cl": -1.8, "Br": -1.6}
    out = [
        Labelled(f"ref-{el}", Structure(Lattice.cubic(3.5), [el], [[0, 0, 0]]), e, el, el)
        for el, e in refs.items()
    ]
    for a in ("Li", "Na"):
        for b in ("Cl", "Br"):
            for i in range(n_per):
                if i % 2:
                    s = Structure.from_spacegroup(
                        "Fm-3m", Lattice.cubic(4.5 + 0.05 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
                    )
                else:
                    s = Structure(
                        Lattice.cubic(3.0 + 0.05 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
                    )
                unrelaxed = s.copy()
                unrelaxed.scale_lattice(s.volume * (1.2 + 0.1 * rng.random()))
                e = (refs[a] + refs[b]) / 2 - 1.0 - 0.3 * (i % 2) + rng.uniform(0, 0.4)
                comp = s.composition
                out.append(
                    Labelled(
                        f"{a}{b}-{i}", s, e, comp.reduced_formula, comp.chemical_system, unrelaxed
                    )
                )
    return out


@pytest.fixture(scope="module")
def labels() -> list[Labelled]:
    return _world()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, labels):
    """A tiny ensemble trained on half of the labelled compounds (and the elements), long
    enough that its predictions tell one structure of a composition from another."""
    from gnomon.models.spec import ModelSpec, TrainConfig
    from gnomon.models.training import Sample, Trainer

    train = [it for i, it in enumerate(labels) if i < 4 or i % 2]
    samples = [Sample.from_structure(it.key, it.structure, it.energy_per_atom) for it in train]
    config = TrainConfig(
        ensemble_size=2, seed=3, max_epochs=80, patience=80, lr=1e-2, val_fraction=0.0, threads=1
    )
    result = Trainer(ModelSpec(hidden=8, num_layers=1), config).fit(samples)
    path = tmp_path_factory.mktemp("model") / "initial.pt"
    result.ensemble.save(path)
    return path


def _expected_round0(labels, model_file, policy, inputs: str = "unrelaxed") -> list[str]:
    """Round 0's picks recomputed by hand: the initial model screens the unrelaxed inputs
    (or ``inputs``), e_above_hull against the elements, then the policy."""
    from gnomon.models.ensemble import Ensemble
    from gnomon.models.screening import Screener

    elements = [it for it in labels if len(it.structure.composition) == 1]
    pool = [it for it in labels if len(it.structure.composition) > 1]
    preds = Screener(Ensemble.load(model_file)).predict([getattr(it, inputs) for it in pool])
    e_hull = e_above_known(elements, pool, [p.energy_per_atom for p in preds])
    scored = [
        Scored(it.key, e, p.sigma, it.reduced_formula)
        for it, e, p in zip(pool, e_hull, preds, strict=True)
    ]
    assert all(p.sigma > 0 for p in preds)
    return [c.candidate_id for c in policy.select(scored, round_index=0)]


def test_round0_from_an_initial_model_is_screened_by_it(labels, model_file):
    kw = dict(rounds=1, budget=4, initial=0, seed=5)
    rand = simulate(labels, "random", **kw)
    scratch = simulate(labels, "greedy", model_options=TINY, **kw)
    greedy = simulate(labels, "greedy", model_options=TINY, initial_model=model_file, **kw)
    # from scratch, nothing revealed yet: round 0 is the random draw
    assert scratch.start == "scratch" and scratch.model_guided == [False]
    assert scratch.picked == rand.picked
    # from the initial model: ranked by its predictions on the unrelaxed inputs
    assert greedy.start == "model" and greedy.model_guided == [True]
    policy = GreedyPolicy(budget=4, seed=5)
    assert greedy.picked[0] == _expected_round0(labels, model_file, policy)
    assert greedy.picked[0] != rand.picked[0]
    # the relaxed structures would have ranked otherwise: the screen read the unrelaxed inputs
    assert greedy.picked[0] != _expected_round0(labels, model_file, policy, inputs="structure")


def test_uncertainty_policy_picks_by_sigma():
    a = Scored("a", 0.00, 0.01, "A")
    b = Scored("b", 0.05, 0.20, "B")
    c = Scored("c", 0.02, 0.00, "C")
    assert [x.candidate_id for x in GreedyPolicy(budget=1).select([a, b, c])] == ["a"]
    # mean - k*sigma: b's spread makes it the most promising
    assert [x.candidate_id for x in UncertaintyPolicy(budget=1, k=1.0).select([a, b, c])] == ["b"]
    assert [x.candidate_id for x in UncertaintyPolicy(budget=3, k=1.0).select([a, b, c])] == [
        "b",
        "a",
        "c",
    ]
    # without spread it is greedy
    assert [x.candidate_id for x in UncertaintyPolicy(budget=1, k=0.0).select([a, b, c])] == ["a"]


def test_simulation_passes_the_models_sigma_to_the_uncertainty_policy(labels, model_file):
    options = {"k": 3.0}
    greedy_picks = _expected_round0(labels, model_file, GreedyPolicy(budget=4, seed=5))
    expected = _expected_round0(labels, model_file, UncertaintyPolicy(budget=4, seed=5, **options))
    assert expected != greedy_picks  # σ changes the choice on this set
    r = simulate(
        labels,
        "uncertainty",
        rounds=1,
        budget=4,
        initial=0,
        seed=5,
        policy_options=options,
        model_options=TINY,
        initial_model=model_file,
    )
    assert r.picked[0] == expected


def test_each_round_fine_tunes_the_previous_rounds_ensemble(labels, model_file, monkeypatch):
    from gnomon.models.ensemble import Ensemble
    from gnomon.models.training import Trainer

    parents, outputs = [], []
    fit = Trainer.fit

    def recording_fit(self, samples, parent=None, normalization=None):
        parents.append(parent)
        result = fit(self, samples, parent, normalization)
        outputs.append(result.ensemble)
        return result

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    r = simulate(
        labels,
        "greedy",
        rounds=3,
        budget=3,
        initial=0,
        model_options=TINY,
        initial_model=model_file,
    )
    assert r.model_guided == [True, True, True]
    # round 0 only screens; rounds 1 and 2 fine-tune the ensemble of the round before
    assert len(parents) == 2
    initial = Ensemble.load(model_file)
    assert all(
        (p1 == p2).all()
        for p1, p2 in zip(
            parents[0].state()["members"][0].values(),
            initial.state()["members"][0].values(),
            strict=True,
        )
    )
    assert parents[1] is outputs[0]
    # the children keep the initial model's normalisation (references, shift, scale)
    for child in outputs:
        assert (child.normalization.element_refs == initial.normalization.element_refs).all()
        assert (child.normalization.shift, child.normalization.scale) == (
            initial.normalization.shift,
            initial.normalization.scale,
        )
    parents.clear()
    simulate(labels, "greedy", rounds=2, budget=3, initial=0, model_options=TINY)
    assert parents == [None]  # from scratch: round 0 random, round 1 a fresh ensemble
    assert outputs[-1].normalization.shift != initial.normalization.shift


def test_simulation_is_reproducible_with_a_seed(labels, model_file):
    kw = dict(rounds=2, budget=3, initial=2, model_options=TINY, initial_model=model_file)
    first = simulate(labels, "uncertainty", seed=7, **kw)
    assert first.as_dict() == simulate(labels, "uncertainty", seed=7, **kw).as_dict()
    other = simulate(labels, "uncertainty", seed=8, **kw)
    assert other.picked != first.picked  # the seed draws the initial compounds and the training


def test_stable_set_defaults_to_the_hull_of_labels_and_reference(labels):
    stable = true_stable(labels)
    r = simulate(labels, "random", rounds=1, budget=5, initial=0)
    assert r.n_stable_total == len(stable)
    given = simulate(
        labels, "random", rounds=1, budget=5, initial=0, stable={labels[-1].key, "not-a-label"}
    )
    assert given.n_stable_total == 1  # only keys of the pool's compounds count


def test_campaign_simulate_cli_starts_from_a_model_file(tmp_path, labels, model_file):
    import json

    import yaml
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from typer.testing import CliRunner

    from gnomon.cli import app

    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps(
            [
                ComputedStructureEntry(
                    it.structure, it.energy_per_atom * len(it.structure)
                ).as_dict()
                for it in labels
            ]
        )
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "sim",
                "elements": ["Li", "Na", "Cl", "Br"],
                "rounds": 1,
                "selection": {"budget": 3},
                "model": {
                    "ensemble_size": 2,
                    "hidden": 8,
                    "layers": 1,
                    "max_epochs": 3,
                    "patience": 2,
                },
            }
        )
    )
    out = tmp_path / "sim.json"
    args = [
        "campaign",
        "simulate",
        str(config),
        "--labels",
        str(path),
        "--initial",
        "0",
        "--policies",
        "greedy",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, [*args, "--model", str(model_file)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())
    assert row["start"] == "model" and row["model_guided"] == [True] and row["evaluations"] == [3]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())
    assert row["start"] == "scratch" and row["model_guided"] == [False]


def test_a_screen_that_keeps_learning_reports_its_error_on_each_rounds_picks(
        labels, model_file, monkeypatch):
    import gnomon.campaign.simulate as sim

    seen: list[list] = []
    fit = sim.Trainer.fit

    def spy(self, samples, *args, **kwargs):
        seen.append(list(samples))
        return fit(self, samples, *args, **kwargs)

    monkeypatch.setattr(sim.Trainer, "fit", spy)
    reference = [it for it in labels if it.chemsys == "Cl-Li"][:4]
    pool = [it for it in labels if it not in reference]
    r = simulate(pool, "greedy", rounds=3, budget=3, initial=0, seed=1, reference=reference,
                 initial_model=model_file, model_options={**TINY, "train_on": "revealed"})
    # one figure per round, every round screened, each the mean |error| of the round's picks
    assert len(r.round_mae) == 3 and all(m is not None and m >= 0 for m in r.round_mae)
    assert r.as_dict()["round_mae"] == r.round_mae
    # rounds 1 and 2 fine-tuned on what was revealed, leaving the reference out as asked
    assert len(seen) == 2
    keys = {s.key.split(":")[0] for samples in seen for s in samples}
    assert not keys & {it.key for it in reference}
    assert set(r.picked[0]) <= keys
    # each pick taught twice: its relaxed structure and its unrelaxed input, one label
    by_key = {it.key: it for it in pool}
    for s in seen[-1]:
        item = by_key[s.key.split(":")[0]]
        assert s.energy_per_atom == pytest.approx(item.energy_per_atom)
        if s.kind == "unrelaxed":
            assert s.key.endswith(":unrelaxed") and item.unrelaxed is not None
            assert Structure.from_dict(s.structure).volume == pytest.approx(item.unrelaxed.volume)
    assert any(s.kind == "unrelaxed" for s in seen[-1])
    # a frozen screen and a random draw report no learning figure where no model screened
    rand = simulate(pool, "random", rounds=2, budget=3, initial=0, seed=1)
    assert rand.round_mae == [None, None]
