"""An orchestrator process for the restart test: submit through SLURM, then track forever.

    python orchestrate.py DB_URL RUNS_DIR N SLEEP_S

The test SIGKILLs it mid-batch and starts another orchestrator on the same database.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dft_helpers import si_diamond  # noqa: E402
from gnomon_fake_engine import FakeEngine  # noqa: E402

from gnomon.dft.service import Relaxations  # noqa: E402
from gnomon.dft.settings import SlurmSettings  # noqa: E402
from gnomon.dft.slurm import SlurmDispatcher  # noqa: E402
from gnomon.storage import open_repository  # noqa: E402


def service(db: str, runs: str) -> Relaxations:
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parent))}
    disp = SlurmDispatcher(SlurmSettings(environment=env, walltime="00:10:00"))
    return Relaxations(open_repository(db), Path(runs), {"slurm": disp}, max_retries=2, pack=1)


def structures(n: int):
    return [si_diamond(5.40 + 0.05 * i) for i in range(n)]


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    db, runs, n, sleep_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    svc = service(db, runs)
    svc.submit(structures(n), FakeEngine(sleep_s=sleep_s), "slurm")
    svc.wait(poll_s=0.5)


if __name__ == "__main__":
    main()
