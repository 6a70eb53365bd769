"""The `gnomon serve` web layer: an OPTIMADE API and a human explorer over one gnomon database."""
