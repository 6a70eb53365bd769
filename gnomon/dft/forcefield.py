"""The force-field engine: one engine for every universal potential, through atomate2.

atomate2 relaxes with any machine-learned potential through one ``ForceFieldRelaxMaker``
whose ``force_field_name`` picks it; gnomon's engine is the same, parameterised by a
:class:`~gnomon.dft.potentials.Potential` from :data:`~gnomon.dft.potentials.POTENTIALS`.
Each potential is an engine under its own name (``mlip`` is CHGNet, ``sevennet``, ``emt``), so
campaigns, the CLI and stored calculations name engines as they always have::

    engine = make_engine("sevennet", settings, fmax=0.1)   # or SevenNetEngine(fmax=0.1)
    engine.scheme                                          # "mlip-sevennet-0"
    doc = engine.relax(structure, workdir)

An engine's energies live in its potential's scheme (``mlip-chgnet-0.3.0``,
``mlip-sevennet-0``, ``mlip-emt``), never mixed with DFT hulls; elemental references come, as
for every engine, from relaxing the elements with this same engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pymatgen.core import Structure

from gnomon.dft.engine import RelaxEngine
from gnomon.dft.errors import InputError
from gnomon.dft.parsing import task_from_forcefield
from gnomon.dft.potentials import POTENTIALS, Potential, installed_version, potential_named
from gnomon.dft.task import TaskDocument
from gnomon.storage.documents import stable_hash

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker

    from gnomon.dft.settings import SiteSettings

#: Settings that say where a model runs, not what it computes: never in the settings hash.
UNHASHED = frozenset({"device"})


@dataclass
class ForceFieldEngine(RelaxEngine):
    """A relaxation of cell and positions by a universal potential (FIRE by default, through
    atomate2's ForceFieldRelaxMaker).

    The engine of one potential is this class bound to it (:func:`engine_for`); its fields
    are those of every potential, and a potential takes the ones its ``settings`` name:
    ``model`` (None: the potential's default), ``device`` (None: its default) and
    ``calculator_kwargs`` (passed to its ASE calculator).
    """

    potential: ClassVar[Potential]
    #: a force-field relaxation takes seconds to minutes: one still going after an hour is
    #: running away (an absurdly dense cell), not converging
    wall_time_s: ClassVar[float | None] = 3600.0

    model: str | None = None
    fmax: float = 0.05
    steps: int = 500
    relax_cell: bool = True
    optimizer: str = "FIRE"
    device: str | None = None
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not hasattr(type(self), "potential"):
            raise TypeError(
                "ForceFieldEngine relaxes with a potential: engine_for('chgnet')(...), "
                "or make_engine('mlip', settings, ...)"
            )
        unused = sorted(
            f.name for f in dataclasses.fields(self)
            if f.name not in self._taken() and getattr(self, f.name) != _default(f)
        )
        if unused:
            raise TypeError(
                f"the {self.potential.label} engine takes no {', '.join(unused)} "
                f"(its settings: {', '.join(self.potential.settings)})"
            )
        if self.model is None:
            self.model = self.potential.default_model
        if self.model is not None and self.potential.resolve_model is not None:
            self.model = self.potential.resolve_model(self.model)
        if self.device is None:
            self.device = self.potential.default_device

    @classmethod
    def _taken(cls) -> set[str]:
        """The fields this potential takes (its settings, under the engine's field names)."""
        return {_field_name(cls.potential, key) for key in cls.potential.settings}

    @classmethod
    def from_settings(cls, settings: SiteSettings, **options: Any) -> ForceFieldEngine:
        """The engine with ``options`` in the potential's setting names (CHGNet's
        ``model_version``); a site's settings change nothing for a force field."""
        return cls.from_spec(options)

    @classmethod
    def from_spec(cls, settings: dict[str, Any]) -> ForceFieldEngine:
        unknown = sorted(set(settings) - set(cls.potential.settings))
        if unknown:
            raise TypeError(
                f"the {cls.potential.label} engine has no setting {', '.join(unknown)} "
                f"(its settings: {', '.join(cls.potential.settings)})"
            )
        return cls(**{_field_name(cls.potential, k): v for k, v in settings.items()})

    @property
    def scheme(self) -> str:
        return self.potential.scheme(self.model)

    def _settings(self) -> dict[str, Any]:
        """The potential's settings, under their stored names."""
        return {k: getattr(self, _field_name(self.potential, k)) for k in self.potential.settings}

    def settings_payload(self) -> dict[str, Any]:
        """The settings that change the result; a model file as its content (its sha256),
        so the same weights elsewhere are the same calculation."""
        payload = {k: v for k, v in self._settings().items() if k not in UNHASHED}
        identity = self.potential.model_identity
        key = self.potential.model_key
        if identity is not None and key is not None and payload.get(key) is not None:
            payload[key] = identity(payload[key])
        return payload

    def spec(self) -> dict[str, Any]:
        return {"engine": self.name, "settings": self._settings()}

    def check(self, structures: Sequence[Structure]) -> None:
        try:
            known = self.potential.elements(self.model)
        except ValueError as exc:  # a model file that is not a checkpoint of this potential
            raise InputError(str(exc)) from exc
        named = " ".join(filter(None, (self.potential.label, self.model)))
        for structure in structures:
            formula = structure.composition.reduced_formula
            if not structure.is_ordered:
                raise InputError(
                    f"{formula}: partial occupancies; an ordered structure is required"
                )
            bad = sorted({el.symbol for el in structure.composition.elements} - known)
            if bad:
                raise InputError(
                    f"{formula}: {named} does not support {', '.join(bad)} "
                    f"({self.potential.coverage.format(n=len(known))})"
                )

    def calculator_kwargs_for_atomate2(self) -> dict[str, Any]:
        """What atomate2 builds the calculator from: a gnomon loader is given the model and
        the device too; a calculator atomate2 builds itself only the user's kwargs."""
        if self.potential.loader is None:
            return dict(self.calculator_kwargs)
        return {"model": self.model, "device": self.device, **self.calculator_kwargs}

    def maker(self, structure: Structure | None = None) -> ForceFieldRelaxMaker:
        """atomate2's maker for this potential; the structure changes nothing in its inputs."""
        from atomate2.forcefields.jobs import ForceFieldRelaxMaker  # heavy: atomate2, torch

        return ForceFieldRelaxMaker(
            force_field_name=self.potential.atomate2_name,
            calculator_meta=self.potential.loader,
            relax_cell=self.relax_cell,
            steps=self.steps,
            # atomate2 would also write the final cell to final_atoms_object.xyz, which gnomon
            # never reads (the task document holds it): on a full disk that write alone would
            # lose a finished relaxation, which the worker otherwise waits to record
            relax_kwargs={"fmax": self.fmax, "final_atoms_object_file": None},
            optimizer_kwargs={"optimizer": self.optimizer},
            calculator_kwargs=self.calculator_kwargs_for_atomate2(),
        )

    def calculator(self) -> Calculator:
        """The ASE calculator this engine's relaxations use, built as atomate2 builds it."""
        return self.maker().calculator

    def inputs_hash(self, structure: Structure) -> str:
        return stable_hash({"settings": self.settings_payload(), "structure": structure.as_dict()})

    def to_task_document(self, output: Any, structure: Structure, workdir: Path) -> TaskDocument:
        # atomate2 knows the version of a calculator it built; of one from a gnomon loader
        # it would record gnomon's, so the potential's package is asked
        package_version: str | None
        if self.potential.loader is None:
            package_version = output.forcefield_version
        else:
            package_version = installed_version(self.potential.package)
        return task_from_forcefield(
            output,
            engine=self.name,
            scheme=self.scheme,
            settings_hash=self.settings_hash,
            inputs_hash=self.inputs_hash(structure),
            initial=structure,
            fmax=self.fmax,
            steps=self.steps,
            model_version=self.model,
            dir_name=str(workdir),
            code=self.potential.package,
            package_version=package_version,
            code_version=self.potential.code_version.format(
                version=package_version, model=self.model
            ),
        )


def _field_name(potential: Potential, key: str) -> str:
    """The engine field a stored setting fills (a potential's model key is ``model``)."""
    return "model" if key == potential.model_key else key


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _bind(potential: Potential) -> type[ForceFieldEngine]:
    """ForceFieldEngine bound to ``potential``: a class of its own, so that it registers as an
    engine under the potential's engine name and is rebuilt by that name from a spec."""
    name = f"{potential.label}Engine"
    namespace = {
        "name": potential.engine,
        "potential": potential,
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"The force-field engine of {potential.label} (``{potential.engine}``).",
    }
    return type(ForceFieldEngine)(name, (ForceFieldEngine,), namespace)  # an ABCMeta class


#: The engine class of each potential, by potential name.
ENGINE_CLASSES: dict[str, type[ForceFieldEngine]] = {
    p.name: _bind(p) for p in POTENTIALS.values()
}


def engine_for(name: str) -> type[ForceFieldEngine]:
    """The engine class of the potential called ``name`` (``chgnet``, ``sevennet``, ``emt``)."""
    return ENGINE_CLASSES[potential_named(name).name]


# the classes by their own names, for callers that build an engine directly
CHGNetEngine = ENGINE_CLASSES["chgnet"]
SevenNetEngine = ENGINE_CLASSES["sevennet"]
EMTEngine = ENGINE_CLASSES["emt"]
