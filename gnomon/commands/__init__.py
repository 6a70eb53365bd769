"""Typer sub-command groups, mounted by ``gnomon.cli``.

Shared here: how a command opens the repository named by ``--db`` / ``GNOMON_DB`` and how
errors reach a person (a red line and a non-zero exit, never a traceback for bad input).
"""
