"""The MongoDB backend: for shared and HPC use, where compute nodes and the orchestrator share
one database (``mongomock://`` gives an in-memory one for tests).

:mod:`.repository` keeps the records; :mod:`.reader` reads entries and phases for
``gnomon serve``, whose view of the database is :mod:`.view` (a derived collection in the same
database, queried through optimade's MongoTransformer).
"""

from __future__ import annotations

from gnomon.storage.mongodb.repository import MongoRepository, open_mongodb

__all__ = ["MongoRepository", "open_mongodb"]
