"""Name -> class registries for the two pluggable families of gnomon.dft: engines, dispatchers.

A concrete engine or dispatcher registers itself when its class is created
(``RelaxEngine.__init_subclass__``, ``Dispatcher.__init_subclass__``), keyed by its ``name``.
The modules that ship with gnomon are listed below by that name, so the names are known
(campaign config validation, CLI help) without importing torch, jobflow or qtoolkit, and a
module is imported only when its class is first asked for. That keeps the base modules
``engine.py`` and ``dispatcher.py`` free of any concrete import: adding an engine is a new
module plus one line here, and adding a universal potential is one entry in
:mod:`gnomon.dft.potentials` (with its scheme) plus its engine name here.

The module imports nothing from gnomon, so every other module may import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """The classes of one family by name; built-in ones are imported on first use.

    ``modules`` maps each built-in name to the module that defines its class; the class must
    carry the same ``name`` (checked when it registers), so a typo cannot hide a class.
    """

    def __init__(self, family: str, modules: Mapping[str, str]) -> None:
        self.family = family
        self._modules = dict(modules)
        self._classes: dict[str, T] = {}

    @property
    def builtin_names(self) -> tuple[str, ...]:
        """The names that ship with gnomon, in the order they are listed."""
        return tuple(self._modules)

    @property
    def names(self) -> tuple[str, ...]:
        """Built-in names, then those of classes registered from elsewhere (plugins, tests)."""
        return (*self._modules, *(n for n in self._classes if n not in self._modules))

    def __contains__(self, name: object) -> bool:
        return name in self._modules or name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def register(self, cls: T) -> T:
        """Record ``cls`` under its ``name``; a second class claiming a taken name is an error."""
        name = cls.__dict__.get("name")
        if not isinstance(name, str):
            raise TypeError(f"{cls.__qualname__}: a registered {self.family} needs a string `name`")
        home = self._modules.get(name)
        if home is not None and cls.__module__ != home:
            raise TypeError(
                f"{self.family} name {name!r} belongs to {home}; "
                f"{cls.__module__}.{cls.__qualname__} needs another name"
            )
        old = self._classes.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise TypeError(
                f"{self.family} name {name!r} is taken by {old.__module__}.{old.__qualname__}"
            )
        self._classes[name] = cls  # the same class again (a reload, @dataclass(slots=True))
        return cls

    def resolve(self, name: str) -> T:
        """The class registered as ``name``, importing its built-in module if need be.

        Raises ValueError naming the choices for an unknown name.
        """
        if name not in self._classes and name in self._modules:
            importlib.import_module(self._modules[name])
        try:
            return self._classes[name]
        except KeyError:
            if name in self._modules:
                raise TypeError(
                    f"{self._modules[name]} defines no {self.family} named {name!r}"
                ) from None
            raise ValueError(
                f"unknown {self.family} {name!r}: choose one of {', '.join(self.names)}"
            ) from None


#: Relaxation engines (:class:`gnomon.dft.engine.RelaxEngine`).
ENGINES: Registry[type] = Registry(
    "engine",
    {
        # one engine per universal potential, all of them gnomon.dft.forcefield's
        "mlip": "gnomon.dft.forcefield",  # CHGNet
        "sevennet": "gnomon.dft.forcefield",
        "qe": "gnomon.dft.qe",
        "vasp": "gnomon.dft.vasp",
        "emt": "gnomon.dft.forcefield",
    },
)

#: Dispatchers (:class:`gnomon.dft.dispatcher.Dispatcher`).
DISPATCHERS: Registry[type] = Registry(
    "dispatcher",
    {
        "local": "gnomon.dft.local",
        "slurm": "gnomon.dft.slurm",
        "jobflow-remote": "gnomon.dft.jobflow_remote",
    },
)
