"""The phase database: entries in energy schemes, per-scheme hulls, phase queries, importing.

Kept apart from generation (``gnomon.pipeline.generation``) because the two only meet in
the repository: generation reads phases as templates, the hull reads entries relaxations
wrote.
"""
