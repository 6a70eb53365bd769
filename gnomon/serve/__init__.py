"""The `gnomon serve` web layer: an OPTIMADE API and a human explorer over one gnomon database.

optimade's logger is quieted here, before any module of this package imports optimade's server
(see :mod:`gnomon.serve.quiet`).
"""

from gnomon.serve.quiet import quiet_optimade_logger

quiet_optimade_logger()
