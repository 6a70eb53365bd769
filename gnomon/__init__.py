"""gnomon: an open, GNoME-style active-learning pipeline for stable inorganic crystals."""

__version__ = "0.1.0"
