"""Makes the test double engine a campaign option in every Python process of a test.

``gnomon campaign serve`` runs each scheduled run in a process of its own (Prefect's runner
spawns it), and relaxations run in further worker processes, so a monkeypatch in the test
cannot reach them. With this directory on ``PYTHONPATH`` every interpreter lists the engine
``fake`` (tests/dft/gnomon_fake_engine.py) among gnomon's engine names before
``gnomon.config`` builds its choice of engines, and a campaign YAML can say
``engine: {name: fake}``. Nothing else changes.
"""

from gnomon.dft.registry import ENGINES

ENGINES._modules.setdefault("fake", "gnomon_fake_engine")
