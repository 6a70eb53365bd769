"""The README's pictures of the explorer, taken from a real campaign's database.

A small Li-Mn-O campaign runs as a user runs one (``gnomon campaign run``: Prefect's engine,
CHGNet relaxations in local worker processes, the pretrained screen), ``gnomon serve``'s app
serves its database on a loopback port, and Debian's chromium opens the system, phase and
search pages a reader of the README sees, writes them to docs/img/, and checks what they show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gnomon.storage import Campaign, Candidate, Entry, open_repository
from tests.serve.serve_helpers import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "img"
CHROMIUM = Path("/usr/bin/chromium")
SCHEME = "mlip-chgnet-0.3.0"
CAMPAIGN = {
    "name": "readme", "elements": ["Li", "Mn", "O"], "rounds": 2, "seed": 7,
    "known_phases": True,
    "saps": {"max_candidates": 30, "max_template_sites": 8, "max_per_template": 4},
    "random_search": {"n_per_composition": 1, "max_compositions": 2, "max_atoms": 8},
    "compositions": {"max_atoms": 7},
    "model": {"start_from": "pretrained", "ensemble_size": 2, "max_epochs": 10, "patience": 4,
              "min_entries": 8},
    "selection": {"policy": "threshold", "threshold": 0.1, "budget": 4, "exploration": 0.25,
                  "max_per_group": 2},
    "engine": {"name": "mlip", "options": {"fmax": 0.1, "steps": 150}},
    "dispatch": {"name": "local", "workers": 2, "pack": 3, "poll_interval": 1.0},
}


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory) -> str:
    """The database of a two-round Li-Mn-O campaign run by ``gnomon campaign run`` (small
    rounds keep CI's time; the known phases relaxed before them fill the pages)."""
    home = tmp_path_factory.mktemp("readme-campaign")
    config = home / "readme.yaml"
    config.write_text(yaml.safe_dump(CAMPAIGN))
    url = f"sqlite:///{home / 'gnomon.db'}"
    env = {**os.environ, "GNOMON_HOME": str(home / "home"), "PREFECT_HOME": str(home / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "gnomon.cli", "campaign", "run", str(config),
                           "--db", url], env=env, cwd=home, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


READY = """() => [...document.querySelectorAll('[data-figure]')].every(e => e.dataset.ready === '1')
  && [...document.querySelectorAll('[data-facts-src], [data-novelty-src]')]
     .every(e => e.dataset.facts === 'ready')"""


def _shoot(page, url: str, name: str, height: int) -> Path:
    page.goto(url)
    page.wait_for_function(READY, timeout=300_000)
    page.wait_for_timeout(500)  # plotly's transitions settle
    path = IMAGES / name
    full = page.evaluate("() => document.documentElement.scrollHeight")
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": min(full, height)})
    return path


def _found(url: str) -> Entry:
    """A phase the campaign's own generators made (SAPS or random search, the richest
    lineage), on the hull if one is, else the nearest to it."""
    repo = open_repository(url)
    phases = {p.id: p for p in repo.phases(scheme=SCHEME)}
    mine = [e for e in repo.query(Entry, {"campaign": "readme"})
            if e.id in phases and e.candidate_id and "-" in e.chemsys]
    generators = {c.id: c.generator for c in repo.query(
        Candidate, {"id": [e.candidate_id for e in mine]})}
    found = [e for e in mine if generators.get(e.candidate_id) not in ("known", "reference")]
    found.sort(key=lambda e: (not phases[e.id].is_stable, phases[e.id].e_above_hull,
                              -e.chemsys.count("-")))
    return found[0]


def test_readme_screenshots_of_a_real_campaign(campaign_db, browser):
    repo = open_repository(campaign_db)
    assert repo.get(Campaign, "readme").rounds_done == 2
    phase = _found(campaign_db)
    IMAGES.mkdir(parents=True, exist_ok=True)
    with live_server(campaign_db) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        system = _shoot(page, f"{base}/systems/Li-Mn-O?scheme={SCHEME}", "explorer-system.png",
                        1500)
        points = page.evaluate("() => document.querySelector('#hull-plot').data"
                               ".filter(t => t.mode && t.mode.includes('markers'))"
                               ".reduce((n, t) => n + t.customdata.length, 0)")
        assert points == page.locator("#phases tbody tr").count() > 5
        shot = _shoot(page, f"{base}/phases/{phase.id}", "explorer-phase.png", 2600)
        assert page.locator("#structure-plot canvas").count() >= 1
        assert page.locator("#xrd-peaks tbody tr").count() == 10
        # candidate, the screen's prediction, calculation, entry
        assert page.locator("ol.lineage li").count() >= 4
        search = _shoot(page, f"{base}/search?elements=Li%2C+Mn%2C+O&mode=all"
                              "&max_e_above_hull=0.1", "explorer-search.png", 1200)
        assert page.locator("#results tbody tr").count() > 0
        assert 'elements HAS ALL "Li","Mn","O"' in page.locator("section.api").inner_text()
    for path in (system, shot, search):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
