"""Traefik's observability switches: router values, entry point models, what the API shows."""

from __future__ import annotations

from typing import Any

from switchyard.config.http import HTTPRouter
from switchyard.config.static import EntryPoint
from switchyard.http.entrypoint_models import apply_models, entry_point_http


def router(**observability: Any) -> HTTPRouter:
    config: dict[str, Any] = {"entryPoints": ["web", "other"], "rule": "Path(`/`)",
                              "service": "app"}
    if observability:
        config["observability"] = observability
    return HTTPRouter.model_validate(config)


def models(**entry_points: dict[str, Any]) -> Any:
    parsed = {name: EntryPoint.model_validate({"address": ":80", **options})
              for name, options in entry_points.items()}
    _, found, problems = entry_point_http(parsed)
    return found, problems


def test_an_entry_point_observability_section_is_a_model_that_splits_its_routers() -> None:
    found, problems = models(web={}, other={"observability": {"metrics": False}})
    assert not problems and set(found) == {"other"}
    applied = apply_models({"r@file": router(accessLogs=False)}, found, ["web", "other"])
    assert set(applied) == {"r@file", "other-r@file"}
    kept, copy = applied["r@file"].observability, applied["other-r@file"].observability
    assert kept is not None and (kept.access_logs, kept.metrics) == (False, None)
    assert copy is not None and (copy.access_logs, copy.metrics) == (False, False)
    assert applied["other-r@file"].entry_points == ["other"]


def test_a_routers_own_switches_win_over_the_entry_points() -> None:
    found, _ = models(other={"observability": {"accessLogs": False, "metrics": False}})
    applied = apply_models({"r@file": router(accessLogs=True)}, found, ["web", "other"])
    copy = applied["other-r@file"].observability
    assert copy is not None and (copy.access_logs, copy.metrics) == (True, False)
    plain = apply_models({"p@file": router()}, found, ["web", "other"])
    assert plain["other-p@file"].observability == found["other"].observability
    assert plain["p@file"].observability is None


def test_an_unreadable_switch_is_reported_with_its_key() -> None:
    found, problems = models(other={"observability": {"accessLogs": "sometimes"}})
    assert not found
    assert [key for key, _ in problems] == ["entryPoints.other.observability.accessLogs"]
