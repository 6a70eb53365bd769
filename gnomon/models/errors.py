"""The error every lookup of a model raises, below the registry and the shipped model alike."""

from __future__ import annotations


class ModelNotFound(LookupError):
    """No model version of that name, or its weights are gone."""
