"""Screening throughput of the 5-model ensemble against CHGNet, and a learning check.

    .venv/bin/python bench/screening.py                 # both parts: ~5 CPU-minutes, 1 thread
    .venv/bin/python bench/screening.py --part speed    # throughput only
    .venv/bin/python bench/screening.py --part learn    # learning check only
    .venv/bin/python bench/screening.py --part cascade  # the cascade's margin, validation systems

Part 1 (speed): the same generated structures go through (a) gnomon's 5-model GNN ensemble,
end to end from stored structure dicts (graph building in a background thread overlapped with
the network), without and with test-time augmentation (5 volume scalings), and (b) CHGNet's
``predict_structure`` (energy only, batched: its fastest setting). Structures and atoms per
second are printed in one table, with the device; on a CUDA host the ensemble is timed on the
GPU as well. Neighbour-list backends (compiled cell lists vs vectorised numpy) are compared.
The cascade (``funnel.first_member_margin``) is timed beside them: the first member on every
structure, then the whole ensemble on ``CASCADE_SHARE`` of them.

Part 3 (cascade): on the shipped model's validation systems, how far the first member's energy
lies above the ensemble's mean minus σ; the share above each margin bounds the passes a
cascade with that margin may miss.

Part 2 (learn): structures in binary and ternary chemical systems are generated from a few
prototypes (rocksalt, CsCl, zincblende, wurtzite, fluorite, anti-fluorite, rutile, perovskite)
with random bond lengths, strains and rattles; CHGNet static energies label them. Whole
chemical systems are held out; the ensemble trains on the rest (calibrating σ on validation
systems it did not train on) and reports held-out MAE and σ calibration.

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from gnomon.models.calibration import calibration_report
from gnomon.models.ensemble import TTA, Ensemble, ModelSpec, Normalization, pick_device
from gnomon.models.graphs import MAX_Z, crystal_graph, neighbor_list, numpy_neighbor_list
from gnomon.models.screening import Featurizer, Screener, featurize_chunk
from gnomon.models.training import Sample, TrainConfig, Trainer

RADII = {  # rough ionic radii (Å) for bond-length guesses
    "Li": 0.76,
    "Na": 1.02,
    "K": 1.38,
    "Rb": 1.52,
    "Mg": 0.72,
    "Ca": 1.00,
    "Sr": 1.18,
    "Ba": 1.35,
    "Zn": 0.74,
    "Al": 0.54,
    "Ga": 0.62,
    "Ti": 0.61,
    "Zr": 0.72,
    "Nb": 0.64,
    "O": 1.40,
    "S": 1.84,
    "Se": 1.98,
    "F": 1.33,
    "Cl": 1.81,
    "Br": 1.96,
    "N": 1.46,
}
#: the share of structures the cascade's whole ensemble sees in the speed table: those within
#: the margin of the threshold; a streaming round that passes a few per cent sends fewer
CASCADE_SHARE = 0.10
CATIONS = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Zn", "Al", "Ga", "Ba"]
ANIONS = ["O", "S", "Se", "F", "Cl", "Br"]
PEROV_A = ["K", "Sr", "Ca", "Na", "Ba"]
PEROV_B = ["Ti", "Zr", "Nb", "Al", "Mg"]


def _prototype(name: str, a_el: str, b_el: str, d: float) -> Structure:
    """A binary prototype with cation-anion bond length ``d`` (Å)."""
    if name == "rocksalt":
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(2 * d), [a_el, b_el], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
    if name == "cscl":
        return Structure(Lattice.cubic(2 * d / 3**0.5), [a_el, b_el], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if name == "zincblende":
        return Structure.from_spacegroup(
            "F-43m", Lattice.cubic(4 * d / 3**0.5), [a_el, b_el], [[0, 0, 0], [0.25, 0.25, 0.25]]
        )
    if name == "wurtzite":
        a = d * (8 / 3) ** 0.5
        return Structure.from_spacegroup(
            "P6_3mc",
            Lattice.hexagonal(a, 1.633 * a),
            [a_el, b_el],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]],
        )
    if name == "fluorite":
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4 * d / 3**0.5), [a_el, b_el], [[0, 0, 0], [0.25, 0.25, 0.25]]
        )
    if name == "antifluorite":
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4 * d / 3**0.5), [b_el, a_el], [[0, 0, 0], [0.25, 0.25, 0.25]]
        )
    if name == "rutile":
        a = 2.3 * d
        return Structure.from_spacegroup(
            "P4_2/mnm",
            Lattice.tetragonal(a, 0.64 * a),
            [a_el, b_el],
            [[0, 0, 0], [0.305, 0.305, 0]],
        )
    raise ValueError(name)


BINARY_PROTOTYPES = [
    "rocksalt",
    "cscl",
    "zincblende",
    "wurtzite",
    "fluorite",
    "antifluorite",
    "rutile",
]


def perovskite(a_el: str, b_el: str, x_el: str, d: float) -> Structure:
    a = 2 * d
    return Structure(
        Lattice.cubic(a),
        [a_el, b_el, x_el, x_el, x_el],
        [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )


def _perturb(s: Structure, rng: np.random.Generator) -> Structure:
    # Structure.perturb draws from a fresh unseeded generator unless given a seed, which made
    # every run of the learning check train on different structures.
    s = s.get_primitive_structure() if len(s) > 6 else s.copy()
    strain = np.eye(3) + rng.normal(0, 0.03, (3, 3))
    s = Structure(Lattice(s.lattice.matrix @ strain), s.species, s.frac_coords)
    s.perturb(0.08 * rng.random(), seed=int(rng.integers(2**31)))
    if rng.random() < 0.25:
        s.make_supercell([1, 1, 2])
        s.perturb(0.05, seed=int(rng.integers(2**31)))
    return s


def chemical_systems() -> list[tuple[str, list[tuple[str, ...]]]]:
    """(chemsys, recipes) for every binary and perovskite system."""
    systems = []
    for c in CATIONS:
        for x in ANIONS:
            systems.append(("-".join(sorted([c, x])), [("binary", c, x)]))
    for a in PEROV_A:
        for b in PEROV_B:
            if a != b:
                systems.append(("-".join(sorted([a, b, "O"])), [("perovskite", a, b, "O")]))
    return systems


def generate(
    recipes: list[tuple[str, ...]], per_system: int, rng: np.random.Generator
) -> list[Structure]:
    out = []
    for recipe in recipes:
        for _ in range(per_system):
            if recipe[0] == "binary":
                _, c, x = recipe
                proto = BINARY_PROTOTYPES[int(rng.integers(len(BINARY_PROTOTYPES)))]
                d = (RADII[c] + RADII[x]) * rng.uniform(0.9, 1.15)
                out.append(_perturb(_prototype(proto, c, x, d), rng))
            else:
                _, a, b, x = recipe
                d = (RADII[b] + RADII[x]) * rng.uniform(0.93, 1.12)
                out.append(_perturb(perovskite(a, b, x, d), rng))
    return out


def chgnet_model():
    from chgnet.model import CHGNet

    return CHGNet.load(verbose=False)


def chgnet_energies(model, structures: list[Structure], batch_size: int = 64) -> np.ndarray:
    preds = model.predict_structure(structures, task="e", batch_size=batch_size)
    return np.array([float(p["e"]) for p in preds])


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([f"\n{title}", line, sep, *body])


# -- part 1: speed -------------------------------------------------------------------------
def fresh_ensemble(structures: list[Structure], size: int = 5) -> Ensemble:
    """A default-sized ensemble (hidden 48, 3 layers, cutoff 5 Å); speed does not need training."""
    spec = ModelSpec()
    graphs = [crystal_graph(s, spec.cutoff) for s in structures[:50]]
    avg = sum(g.edge_index.shape[1] for g in graphs) / sum(g.num_nodes for g in graphs)
    norm = Normalization(np.zeros(MAX_Z + 1), np.ones(MAX_Z + 1, bool), -4.0, 1.0)
    return Ensemble.create("gnn", spec.hparams(avg), size, norm, seeds=list(range(size))).eval()


def time_ensemble(
    ens: Ensemble, dicts: list[dict], tta: TTA | None, batch_size: int | None, repeats: int = 2,
    members: tuple[int, ...] | None = None,
) -> float:
    """Best wall time to screen ``dicts`` (by ``members`` only, when given); ``batch_size=None``
    takes the Screener's default."""
    screener = Screener(ens, batch_size=batch_size, tta=tta, members=members)
    screener.predict(dicts[: screener.batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in screener.stream(enumerate(dicts)):
            pass
        if ens.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def graphs_vs_network(ens: Ensemble, dicts: list[dict], rounds: int = 5) -> str:
    """Where the screen's CPU goes: graph building (featurising the stored structure dicts,
    collated into batches) against the whole screen, CPU seconds, interleaved, median of
    ``rounds``; the network is the difference."""
    featurizer = Featurizer.for_ensemble(ens)
    screener = Screener(ens)
    items = list(enumerate(dicts))
    screener.predict(dicts[: screener.batch_size])  # warm-up
    graphs, total = [], []
    for _ in range(rounds):
        t0 = time.process_time()
        for k in range(0, len(items), screener.batch_size):
            featurize_chunk(featurizer, items[k : k + screener.batch_size])
        graphs.append(time.process_time() - t0)
        t0 = time.process_time()
        for _ in screener.stream(items):
            pass
        total.append(time.process_time() - t0)
    g, t = statistics.median(graphs), statistics.median(total)
    per = 1e6 / len(dicts)
    return table(
        f"where the screen's CPU goes ({len(dicts)} structures, median of {rounds} rounds)",
        ["part", "µs CPU/structure", "share"],
        [
            [
                "graph building (structure dict -> collated batch)",
                f"{g * per:.0f}",
                f"{100 * g / t:.0f} %",
            ],
            [
                "network (5 members; the rest of the screen)",
                f"{(t - g) * per:.0f}",
                f"{100 * (t - g) / t:.0f} %",
            ],
            ["screen, end to end", f"{t * per:.0f}", "100 %"],
        ],
    )


def speed(
    n_structures: int, threads: int, ensemble: Ensemble | None, seed: int = 0, rounds: int = 5
) -> None:
    rng = np.random.default_rng(seed)
    systems = chemical_systems()
    picks = rng.choice(len(systems), size=n_structures)
    structures = [generate(systems[i][1], 1, rng)[0] for i in picks]
    dicts = [s.as_dict() for s in structures]
    n_atoms = sum(len(s) for s in structures)
    ens = ensemble if ensemble is not None else fresh_ensemble(structures)
    params = sum(p.numel() for p in ens.members[0].parameters())
    print(
        f"\n{n_structures} structures, {n_atoms} atoms ({n_atoms / n_structures:.1f} per "
        "structure); "
        f"torch threads {torch.get_num_threads()}; ensemble of {ens.size} x {params:,} parameters "
        f"(hidden {ens.hparams['hidden']}, {ens.hparams['num_layers']} layers, cutoff {ens.cutoff} "
        "Å)"
    )

    # neighbour-list backends
    t0 = time.perf_counter()
    for s in structures:
        neighbor_list(s.frac_coords, s.lattice.matrix, 5.0)
    t_cell = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in structures:
        numpy_neighbor_list(s.frac_coords, s.lattice.matrix, 5.0)
    t_np = time.perf_counter() - t0
    print(
        table(
            "neighbour lists (5 Å), per structure",
            ["backend", "µs/structure"],
            [
                [
                    "pymatgen find_points_in_spheres on arrays (used)",
                    f"{1e6 * t_cell / n_structures:.0f}",
                ],
                ["vectorised numpy over images", f"{1e6 * t_np / n_structures:.0f}"],
            ],
        )
    )

    rows = []
    cpu = torch.device("cpu")
    ens = ens.to(cpu)
    print(graphs_vs_network(ens, dicts))
    tta = TTA()
    model = chgnet_model()
    chgnet_energies(model, structures[:64], batch_size=64)  # warm-up: one full batch
    # This VM's speed drifts by 30-50 % within seconds, so a ratio of two best times taken at
    # different moments measures the drift as much as the code. Each round times CHGNet between
    # two ensemble runs (and TTA after), and its ratio pairs CHGNet with the mean of those two;
    # the table's "x CHGNet" is the median over rounds, its throughputs the best rounds.
    times: dict[str, list[float]] = {"plain": [], "tta": [], "chgnet": [], "cascade": []}
    ratio: dict[str, list[float]] = {"plain": [], "tta": [], "cascade": []}
    # the cascade (funnel.first_member_margin): the first member screens every structure, the
    # whole ensemble the share that lands within the margin of the threshold
    onward = dicts[: max(1, round(CASCADE_SHARE * len(dicts)))]
    for _ in range(rounds):
        before = time_ensemble(ens, dicts, None, None, repeats=1)
        t0 = time.perf_counter()
        chgnet_energies(model, structures, batch_size=64)
        t_chg = time.perf_counter() - t0
        after = time_ensemble(ens, dicts, None, None, repeats=1)
        t_tta = time_ensemble(ens, dicts, tta, None, repeats=1)
        t_cascade = (time_ensemble(ens, dicts, None, None, repeats=1, members=(0,))
                     + time_ensemble(ens, onward, None, None, repeats=1))
        times["plain"] += [before, after]
        times["chgnet"].append(t_chg)
        times["tta"].append(t_tta)
        times["cascade"].append(t_cascade)
        ratio["plain"].append(t_chg / ((before + after) / 2))
        ratio["tta"].append(t_chg / t_tta)
        ratio["cascade"].append(t_chg / t_cascade)
    best = {k: min(v) for k, v in times.items()}
    chg_atoms = n_atoms / best["chgnet"]
    x_chgnet = {k: statistics.median(v) for k, v in ratio.items()}
    rows.append(
        [
            "gnomon 5-model ensemble",
            "cpu",
            f"{n_structures / best['plain']:.1f}",
            f"{n_atoms / best['plain']:.0f}",
            f"{x_chgnet['plain']:.1f}",
        ]
    )
    rows.append(
        [
            "gnomon 5-model ensemble + TTA x5",
            "cpu",
            f"{n_structures / best['tta']:.1f}",
            f"{n_atoms / best['tta']:.0f}",
            f"{x_chgnet['tta']:.1f}",
        ]
    )
    rows.append(
        [
            f"gnomon cascade: first member, then the 5-model ensemble on "
            f"{100 * CASCADE_SHARE:.0f} %",
            "cpu",
            f"{n_structures / best['cascade']:.1f}",
            f"{n_atoms / best['cascade']:.0f}",
            f"{x_chgnet['cascade']:.1f}",
        ]
    )
    rows.append(
        [
            "CHGNet predict_structure (energy only, batch 64, same structures)",
            "cpu",
            f"{n_structures / best['chgnet']:.1f}",
            f"{chg_atoms:.0f}",
            "1.0",
        ]
    )
    if torch.cuda.is_available():
        gpu = pick_device("cuda")
        name = torch.cuda.get_device_name(gpu)
        ens_gpu = ens.to(gpu)
        for label, aug in (
            ("gnomon 5-model ensemble", None),
            ("gnomon 5-model ensemble + TTA x5", tta),
        ):
            dt = time_ensemble(ens_gpu, dicts, aug, batch_size=512)
            rows.append(
                [label, f"cuda ({name}, AMP)", f"{n_structures / dt:.1f}", f"{n_atoms / dt:.0f}"]
            )
        ens.to(cpu)
        model = model.to("cuda")
        chgnet_energies(model, structures[:4])
        t0 = time.perf_counter()
        chgnet_energies(model, structures, batch_size=64)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        rows.append(
            [
                "CHGNet predict_structure (energy only, batch 64)",
                f"cuda ({name})",
                f"{n_structures / dt:.1f}",
                f"{n_atoms / dt:.0f}",
            ]
        )
    print(
        table(
            "screening throughput (same structures, same run)",
            ["model", "device", "structures/s", "atoms/s", "x CHGNet (atoms/s, cpu)"],
            [
                r if len(r) == 5 else r + [f"{float(r[3]) / chg_atoms:.1f} (best/best)"]
                for r in rows
            ],
        )
    )
    print(
        f"x CHGNet per round, ensemble: {', '.join(f'{x:.1f}' for x in ratio['plain'])}; "
        f"with TTA: {', '.join(f'{x:.1f}' for x in ratio['tta'])}; cascade: "
        f"{', '.join(f'{x:.1f}' for x in ratio['cascade'])} (median in the table)"
    )


# -- part 3: the cascade's margin --------------------------------------------------------
def cascade(margins: list[float]) -> None:
    """What a first-member margin costs, on the shipped model's validation systems (drawn from
    its training systems; the held-out systems are not read): the unrelaxed inputs (what
    screening sees) by the first member alone and by the whole ensemble. A candidate the
    cascade fails and the ensemble would pass has ``first - (mean - σ) > margin``, so the share
    of inputs above each margin bounds the passes it can miss, whatever the threshold."""
    from gnomon.models.pretrained import load_weights, read_card
    from gnomon.world.files import default_world_dir
    from gnomon.world.pretrain import load, split_world

    card = read_card()
    ens = load_weights(card["weights"])
    data = load(default_world_dir())
    split = split_world(data)
    val = set(card["split"]["validation_systems"])
    rows = [i for i in split.train if data.entries[i].chemsys in val]
    inputs = [data.unrelaxed[i].structure for i in rows]
    whole = Screener(ens, batch_size=256).predict(inputs)
    first = Screener(ens, batch_size=256, members=(0,)).predict(inputs)
    d = np.array([f.energy_per_atom - (w.energy_per_atom - w.sigma)
                  for f, w in zip(first, whole, strict=True) if w.rejected is None])
    print(f"\n{card['version']}: {len(d)} unrelaxed inputs of {len(val)} validation systems; "
          "first member minus the ensemble's mean minus σ (eV/atom): "
          + ", ".join(f"q{q:g} {np.quantile(d, q / 100):+.3f}" for q in (50, 90, 99, 99.9))
          + f", max {d.max():+.3f}")
    print(table(
        "the cascade's margin (funnel.first_member_margin): passes it may miss",
        ["margin (eV/atom)", "inputs with first - (mean - σ) > margin", "share"],
        [[f"{m:.2f}", f"{int((d > m).sum())}", f"{100 * float((d > m).mean()):.2f} %"]
         for m in margins]))


# -- part 2: learning check ----------------------------------------------------------------
def learn(
    per_system: int,
    held_out_fraction: float,
    epochs: int,
    threads: int,
    seed: int = 0,
    args_hidden: int = 32,
):
    rng = np.random.default_rng(seed)
    systems = chemical_systems()
    order = rng.permutation(len(systems))
    n_test = int(round(held_out_fraction * len(systems)))
    test_sys = {systems[i][0] for i in order[:n_test]}
    print(
        f"\n{len(systems)} chemical systems ({len(test_sys)} held out: "
        f"{', '.join(sorted(test_sys))}), "
        f"{per_system} structures each"
    )
    structures, systems_of = [], []
    for chemsys, recipes in systems:
        for s in generate(recipes, per_system, rng):
            structures.append(s)
            systems_of.append(chemsys)
    model = chgnet_model()
    t0 = time.perf_counter()
    energies = chgnet_energies(model, structures)
    t_label = time.perf_counter() - t0
    samples = [
        Sample.from_structure(f"s{i}", s, e)
        for i, (s, e) in enumerate(zip(structures, energies, strict=True))
    ]
    train = [s for s, cs in zip(samples, systems_of, strict=True) if cs not in test_sys]
    test = [s for s, cs in zip(samples, systems_of, strict=True) if cs in test_sys]
    print(
        f"labelled {len(samples)} structures with CHGNet static energies in {t_label:.0f} s "
        f"(energy per atom spans {energies.min():.2f} to {energies.max():.2f} eV)"
    )
    spec = ModelSpec(hidden=args_hidden, num_layers=3, num_radial=16, cutoff=5.0)
    config = TrainConfig(
        ensemble_size=5,
        seed=seed,
        max_epochs=epochs,
        patience=15,
        batch_size=32,
        lr=3e-3,
        group_by="chemsys",
        val_fraction=0.2,
        threads=threads,
    )
    t0 = time.perf_counter()
    result = Trainer(spec, config).fit(train)
    t_train = time.perf_counter() - t0
    ens = result.ensemble
    m = result.metrics
    print(
        f"trained 5 members in {t_train:.0f} s on {m['n_train']} structures "
        f"(validation/calibration: {m['n_val']} structures in unseen systems); "
        f"fitted σ scale {ens.sigma_scale:.2f}; best epochs "
        f"{[h['best_epoch'] for h in m['members']]}"
    )
    rows = []
    held = Screener(ens, batch_size=256).predict([s.structure for s in test])
    err = np.array([r.energy_per_atom - s.energy_per_atom for r, s in zip(held, test, strict=True)])
    sig = np.array([r.sigma for r in held])
    raw = calibration_report(err, sig / ens.sigma_scale)
    cal = calibration_report(err, sig)
    held_tta = Screener(ens, batch_size=256, tta=TTA(aggregate="mean")).predict(
        [s.structure for s in test]
    )
    err_t = np.array(
        [r.energy_per_atom - s.energy_per_atom for r, s in zip(held_tta, test, strict=True)]
    )
    cal_t = calibration_report(err_t, np.array([r.sigma for r in held_tta]))
    ref = _reference_only(ens, test)
    for name, r in (
        ("validation systems, calibrated", m["val"]),
        ("held-out systems, raw σ", raw),
        ("held-out systems, calibrated σ", cal),
        ("held-out systems, calibrated, TTA mean", cal_t),
    ):
        rows.append(
            [
                name,
                str(r["n"]),
                f"{1000 * r['mae']:.0f}",
                f"{1000 * r['mean_sigma']:.0f}",
                f"{r['coverage_1sigma']:.2f}",
                f"{r['coverage_2sigma']:.2f}",
                f"{r['miscalibration_area']:.3f}",
            ]
        )
    print(
        table(
            "learning check: CHGNet energies, held-out chemical systems",
            ["set", "n", "MAE meV/atom", "mean σ meV", "±1σ cover", "±2σ cover", "miscal. area"],
            rows,
        )
    )
    held_out = np.array([s.energy_per_atom for s in test])
    spread = np.mean(np.abs(held_out - held_out.mean()))
    print(
        f"element-reference baseline alone on held-out systems: MAE {1000 * ref:.0f} meV/atom; "
        f"spread of held-out energies (MAD from mean): {1000 * spread:.0f} meV/atom"
    )
    return ens


def _reference_only(ens: Ensemble, samples: list[Sample]) -> float:
    from gnomon.models.composition import fraction_matrix

    x = fraction_matrix([s.composition for s in samples]).astype(float)
    pred = x @ ens.normalization.element_refs + ens.normalization.shift
    return float(np.mean(np.abs(pred - np.array([s.energy_per_atom for s in samples]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["speed", "learn", "cascade", "all"], default="all")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 1.0],
                        help="first-member margins measured (cascade), eV/atom")
    parser.add_argument("--structures", type=int, default=400, help="structures timed (speed)")
    parser.add_argument(
        "--per-system", type=int, default=8, help="structures per chemical system (learn)"
    )
    parser.add_argument(
        "--held-out", type=float, default=0.2, help="share of chemical systems held out"
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32, help="width of the learning-check model")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy host)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(
        f"device: cpu ({torch.get_num_threads()} threads)"
        + (
            f"; cuda: {torch.cuda.get_device_name(0)}"
            if torch.cuda.is_available()
            else "; no CUDA device"
        )
    )
    if args.part in ("learn", "all"):
        learn(args.per_system, args.held_out, args.epochs, args.threads, args.seed, args.hidden)
    if args.part in ("speed", "all"):
        speed(args.structures, args.threads, None, args.seed)
    if args.part in ("cascade", "all"):
        cascade(args.margins)


if __name__ == "__main__":
    main()
