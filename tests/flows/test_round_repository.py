"""A round opens its database once per process and hands it down to every step: the flow
holds it, its in-process tasks share it, and nothing reopens it from the URL step by step."""

from __future__ import annotations

import sys

import pytest

from gnomon.config import CampaignConfig, Settings
from gnomon.flows import connections
from gnomon.storage import Candidate


@pytest.fixture
def opened(monkeypatch):
    """URLs passed to ``open_repository`` by any module of gnomon.flows or gnomon.campaign,
    counted where each looks the function up."""
    from gnomon.campaign import runs  # noqa: F401 - imported, so that its name is patched too
    from gnomon.campaign.steps import context  # noqa: F401
    from gnomon.flows import campaign, round  # noqa: F401

    real = connections.open_repository
    urls: list[str] = []

    def counting(url: str):
        urls.append(url)
        return real(url)

    for name, module in list(sys.modules.items()):
        if (
            name.startswith(("gnomon.flows", "gnomon.campaign"))
            and getattr(module, "open_repository", None) is real
        ):
            monkeypatch.setattr(module, "open_repository", counting)
    yield urls
    connections.close_repositories()


def test_a_held_repository_is_the_one_the_process_hands_out_and_closes_after(tmp_path, opened):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with connections.held_repository(url) as repo:
        assert connections.process_repository(url) is repo
        with connections.held_repository(url) as inner:  # a round inside its campaign flow
            assert inner is repo
        assert connections.process_repository(url) is repo  # the inner block closed nothing
    assert opened == [url]
    kept = connections.process_repository(url)  # a worker process's task: opened, then kept
    assert kept is not repo and connections.process_repository(url) is kept
    assert opened == [url, url]


@pytest.fixture
def trivial_steps(monkeypatch):
    """Every step and generator replaced by one that reads the database through its context;
    the repositories they saw, by step."""
    from gnomon.campaign import steps

    seen: dict[str, int] = {}

    def step(name: str):
        def run(ctx) -> dict:
            ctx.repo.count("candidates")
            seen[name] = id(ctx.repo)
            return {}

        return run

    for name in steps.STEPS:
        monkeypatch.setitem(steps.STEP_FUNCTIONS, name, step(name))
    for name in steps.GENERATORS:
        monkeypatch.setitem(steps.GENERATORS, name, step(f"generate:{name}"))
    return seen


def _payload(tmp_path) -> tuple[Settings, dict, dict]:
    from gnomon.flows.database import settings_payload

    settings = Settings(home=tmp_path / "home")
    config = CampaignConfig(name="once", elements=["Li", "O"], known_phases=False)
    return settings, settings_payload(settings), config.model_dump(mode="json")


@pytest.mark.slow
def test_a_round_opens_its_repository_once(tmp_path, opened, trivial_steps):
    from gnomon.flows.round import round_flow

    settings, payload, config = _payload(tmp_path)
    round_flow(payload, config, 0)
    assert opened == [settings.db_url]
    from gnomon.campaign.steps import GENERATORS, STEPS

    # "generate" is recorded by the flow from its generators' tasks
    assert set(trivial_steps) == (
        {s for s in STEPS if s != "generate"} | {f"generate:{g}" for g in GENERATORS}
    )
    assert len(set(trivial_steps.values())) == 1  # one repository, handed to every step


@pytest.mark.slow
def test_a_campaign_opens_its_repository_once_for_its_rounds(tmp_path, opened, trivial_steps):
    from gnomon.flows.campaign import campaign_flow

    settings, payload, config = _payload(tmp_path)
    result = campaign_flow(config, payload, rounds=2)
    assert result["status"] == "finished"
    # the flow's own, for every round and step; and the lease renewer's, which writes from
    # a thread of its own and never joins the flow's transactions
    assert opened == [settings.db_url, settings.db_url]
    assert len(set(trivial_steps.values())) == 1
    with connections.held_repository(settings.db_url) as repo:
        assert repo.count("rounds") == 2 and not list(repo.query(Candidate))
