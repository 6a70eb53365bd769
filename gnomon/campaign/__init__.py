"""A discovery campaign's logic, framework-free: a round's steps as plain functions over the
repository, selection policies, chemical-system planning, simulation against labelled sets,
leases and run records, and reports.

Nothing here imports Prefect or Dask: :mod:`gnomon.flows` wires these steps into flows and
fans heavy ones out, and receives them as plain callables.
"""
