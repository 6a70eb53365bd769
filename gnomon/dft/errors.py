"""What goes wrong in gnomon.dft, by whose fault."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be submitted (missing code or pseudopotential, unsupported element).

    Raised before anything is submitted, with a message a person can act on.
    """


class DispatchError(RuntimeError):
    """A dispatcher that cannot be used (SLURM unreachable) or refused a submission."""


class RelaxationError(RuntimeError):
    """A relaxation that ran and failed; ``reason`` is what gets recorded on the Calculation."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
