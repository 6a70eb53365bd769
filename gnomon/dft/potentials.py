"""The universal potentials the force-field engine relaxes with: one registry entry each.

A potential is data, not an engine: how its ASE calculator is built (its heavy package is
imported only then), which package made an energy, which elements it covers, the settings a
campaign may give it, and the energy scheme its energies live in, so that they never share a
hull with another potential's or a DFT code's. :mod:`gnomon.dft.forcefield` turns each entry
into an engine, the way atomate2's one ``ForceFieldRelaxMaker`` serves every force field.

- ``chgnet``: CHGNet (Deng et al., Nat. Mach. Intell. 5, 1031, 2023), the embedded default;
  its weights ship in the ``chgnet`` wheel and it runs on a laptop CPU in seconds.
- ``sevennet``: SevenNet-0 (Park et al., J. Chem. Theory Comput. 20, 4857, 2024; an
  equivariant NequIP-style network trained on MPtrj), so a campaign can pre-relax with one
  potential and judge with another; its weights ship in the ``sevenn`` wheel. ``model`` may
  also be a checkpoint file, such as a fine-tune ``gnomon mlip finetune`` wrote
  (:mod:`gnomon.dft.sevennet_finetune`): its scheme is then ``mlip-sevennet-ft-<sha256
  prefix>``, named by its weights, not by where the file lies.
- ``emt``: ASE's effective-medium theory for 11 metals and light elements. No physics a hull
  should trust, but a real calculator that costs milliseconds: it measures what gnomon's
  orchestration costs (``bench/dispatch.py``) without a neural network in the timings.

A new potential is one :class:`Potential` in :data:`POTENTIALS` with its scheme, and its engine
name in :data:`gnomon.dft.registry.ENGINES` (so that configs know the name without importing it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymatgen.core import Element

from gnomon.pipeline.thermo.schemes import (
    check_scheme,
    checkpoint_sha256,
    is_checkpoint_path,
    mlip_scheme,
    sevennet_scheme,
)

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator
    from ase.calculators.emt import EMT

#: The settings every potential takes: how the relaxation runs, not what computes the energy.
RELAX_SETTINGS = ("fmax", "steps", "relax_cell", "optimizer")

#: SevenNet-0 (11 July 2024), the checkpoint ``sevenn`` ships under this name.
SEVENNET_MODEL = "7net-0"

CHGNET_MAX_Z = 94  # CHGNet's element embedding covers H..Pu


@dataclass(frozen=True)
class Potential:
    """One universal potential, as the force-field engine needs to know it.

    ``settings`` are the keys a campaign's options, an engine's spec and its settings hash use,
    in their stored names: the hash of a calculation already in a database must not change,
    so CHGNet's model stays ``model_version`` there and SevenNet keeps no ``calculator_kwargs``.
    ``device`` is a setting that is never hashed: the same model on another device is the
    same calculation, as a binary's path is.
    """

    name: str  # its key in POTENTIALS
    engine: str  # the engine name campaigns and the CLI give it
    label: str  # how messages name it
    package: str  # the distribution that computes it, recorded as the task's code
    scheme: Callable[[str | None], str]  # model -> energy scheme
    elements: Callable[[str | None], frozenset[str]]  # model -> element symbols it covers
    coverage: str  # those elements in words, for an error; ``{n}`` is how many there are
    settings: tuple[str, ...] = RELAX_SETTINGS
    model_key: str | None = None  # the setting that names the model (None: it has no choice)
    default_model: str | None = None
    default_device: str | None = None  # None: the package picks
    atomate2_name: str = "Forcefield"  # atomate2's MLFF name (its placeholder for any other)
    #: Import path of the function that builds its calculator from ``model``, ``device`` and
    #: the user's ``calculator_kwargs``; None: atomate2 builds ``atomate2_name``'s itself,
    #: from ``calculator_kwargs`` alone, and records its package's version.
    loader: str | None = None
    code_version: str = "{version} model {model}"  # ``{version}`` of ``package``, ``{model}``
    #: The model as an engine keeps it (a checkpoint file: its absolute path), ValueError
    #: naming what is wrong with one that cannot be used; None: any model as given.
    resolve_model: Callable[[str], str] | None = None
    #: What the settings hash records of the model (a checkpoint file: its sha256, not where
    #: it lies); None: the model as given.
    model_identity: Callable[[str], str] | None = None


def installed_version(package: str) -> str:
    """The installed version of ``package``; "unknown" for a checkout without metadata."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# -- CHGNet ---------------------------------------------------------------------------------------


def chgnet_scheme(model: str | None) -> str:
    return mlip_scheme("chgnet", model or "")


@functools.cache
def chgnet_elements(model: str | None = None) -> frozenset[str]:
    """Every element up to Pu: CHGNet's embedding is indexed by atomic number."""
    return frozenset(Element.from_Z(z).symbol for z in range(1, CHGNET_MAX_Z + 1))


CHGNET = Potential(
    name="chgnet",
    engine="mlip",
    label="CHGNet",
    package="chgnet",
    scheme=chgnet_scheme,
    elements=chgnet_elements,
    coverage=f"elements up to Z={CHGNET_MAX_Z}, Pu, only",
    settings=("model_version", *RELAX_SETTINGS, "calculator_kwargs"),
    model_key="model_version",
    default_model="0.3.0",
    atomate2_name="CHGNet",
    code_version="chgnet {version} model {model}",
)


# -- SevenNet -------------------------------------------------------------------------------------


def sevennet_calculator(
    model: str = SEVENNET_MODEL, device: str = "cpu", **kwargs: Any
) -> Calculator:
    """SevenNet's ASE calculator for ``model``; the weights of ``7net-0`` ship in the ``sevenn``
    wheel, so nothing is downloaded. ``kwargs`` go to ``SevenNetCalculator`` (``modal`` for a
    multi-fidelity model). The single place gnomon loads SevenNet: the engine (through
    atomate2) and the zero-shot peer in :mod:`gnomon.models.peers` use the same calculator."""
    try:
        from sevenn.calculator import SevenNetCalculator  # heavy: sevenn (torch)
    except ImportError as exc:
        raise ImportError("SevenNet needs the 'sevenn' package (pip install sevenn)") from exc
    return SevenNetCalculator(model, device=device, **kwargs)


def sevennet_model(model: str) -> str:
    """The model as the SevenNet engine keeps it: a name sevenn knows (``7net-0``) as given; a
    checkpoint file (``gnomon mlip finetune`` writes one) as its absolute path, since a
    relaxation runs in a folder of its own. ValueError, one line naming the file, for a file
    that is missing or cannot be read."""
    if not is_checkpoint_path(model):
        return model
    checkpoint_sha256(model)  # raises SchemeError (a ValueError) naming the file
    return str(Path(model).expanduser().resolve())


def sevennet_model_identity(model: str) -> str:
    """What a settings hash records of the model: a name as given (so stored calculations of
    ``7net-0`` keep their hashes); a checkpoint file its sha256, wherever the file lies."""
    return f"sha256:{checkpoint_sha256(model)}" if is_checkpoint_path(model) else model


def sevennet_elements(model: str | None = SEVENNET_MODEL) -> frozenset[str]:
    """The elements ``model`` was trained on (its checkpoint's type map), read once per
    checkpoint: a name as sevenn resolves it, a file by its content. ValueError, one line
    naming the file, for a file that is not a SevenNet checkpoint."""
    model = model or SEVENNET_MODEL
    if is_checkpoint_path(model):
        return _type_map_elements(sevennet_model(model), checkpoint_sha256(model))
    return _type_map_elements(model, None)


@functools.lru_cache(maxsize=8)
def _type_map_elements(model: str, sha256: str | None) -> frozenset[str]:
    """The checkpoint's type map as element symbols (``sha256`` keys a file's version)."""
    import sevenn._keys as keys  # heavy: sevenn (torch)
    from sevenn import util  # heavy: sevenn (torch)

    if sha256 is None:
        type_map = util.load_checkpoint(model).config[keys.TYPE_MAP]
    else:
        try:
            type_map = util.load_checkpoint(model).config[keys.TYPE_MAP]
        # torch.load's failures on a file that is not a checkpoint have no common type
        # (UnpicklingError, RuntimeError, EOFError, KeyError...): re-raised as one line
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"SevenNet checkpoint {model}: not a SevenNet checkpoint ({first})"
            ) from exc
    return frozenset(Element.from_Z(int(z)).symbol for z in type_map)


SEVENNET = Potential(
    name="sevennet",
    engine="sevennet",
    label="SevenNet",
    package="sevenn",
    scheme=lambda model: sevennet_scheme(model or SEVENNET_MODEL),
    elements=sevennet_elements,
    coverage="trained on {n} elements",
    settings=("model", *RELAX_SETTINGS, "device"),
    model_key="model",
    default_model=SEVENNET_MODEL,
    default_device="cpu",
    atomate2_name="SevenNet",
    loader=f"{__name__}.sevennet_calculator",
    resolve_model=sevennet_model,
    model_identity=sevennet_model_identity,
)


# -- EMT ------------------------------------------------------------------------------------------


def emt_calculator(model: str | None = None, device: str | None = None, **kwargs: Any) -> EMT:
    """ASE's EMT calculator; it has one parameter set and runs on the CPU, so ``model`` and
    ``device`` are accepted (every loader is given them) and ignored."""
    # heavy: ase (its calculators; the registry of potentials is read without them)
    from ase.calculators.emt import EMT

    return EMT(**kwargs)


def emt_elements(model: str | None = None) -> frozenset[str]:
    """The elements ASE's EMT has parameters for."""
    # heavy: ase
    from ase.calculators.emt import parameters

    return frozenset(parameters)


EMT_POTENTIAL = Potential(
    name="emt",
    engine="emt",
    label="EMT",
    package="ase",
    scheme=lambda model: check_scheme("mlip-emt"),
    elements=emt_elements,
    coverage="ASE's EMT has parameters for {n} elements",
    loader=f"{__name__}.emt_calculator",
    code_version="{version} EMT",
)


#: Every potential by name.
POTENTIALS: dict[str, Potential] = {p.name: p for p in (CHGNET, SEVENNET, EMT_POTENTIAL)}


def potential_named(name: str) -> Potential:
    """The potential called ``name``; ValueError naming the choices for an unknown one."""
    try:
        return POTENTIALS[name]
    except KeyError:
        raise ValueError(
            f"unknown potential {name!r}: choose one of {', '.join(POTENTIALS)}"
        ) from None
