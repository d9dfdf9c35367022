"""Which static source is read (file, flags, environment) and how flags and variables decode."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.config.loader import ConfigLoadError
from switchyard.config.sources import (
    discover_static_file,
    env_settings,
    flag_settings,
    read_static,
    search_paths,
    tree_from_settings,
)


def env_tree(**variables: str) -> dict[str, object]:
    return tree_from_settings(env_settings(variables), "environment")


def flags_tree(*args: str) -> dict[str, object]:
    return tree_from_settings(flag_settings(args), "flags")


def test_traefik_variables_become_lower_case_keys_split_on_underscores() -> None:
    assert env_tree(TRAEFIK_ENTRYPOINTS_WEB_ADDRESS=":80", TRAEFIK_LOG_LEVEL="DEBUG") == {
        "entrypoints": {"web": {"address": ":80"}}, "log": {"level": "DEBUG"}}


def test_only_variables_naming_a_top_level_key_count() -> None:
    # SWITCHYARD_SPLICE and SWITCHYARD_LOOP are process settings, not configuration.
    assert env_settings({"TRAEFIK_FOO": "1", "SWITCHYARD_SPLICE": "0", "SWITCHYARD_LOOP": "x",
                         "traefik_log_level": "DEBUG", "PATH": "/bin"}) == []


def test_switchyard_variables_are_the_same_and_win_over_traefik_ones() -> None:
    assert env_tree(TRAEFIK_LOG_LEVEL="DEBUG", SWITCHYARD_LOG_LEVEL="INFO",
                    SWITCHYARD_PING="true") == {"log": {"level": "INFO"}, "ping": {}}


def test_true_switches_a_section_on_and_false_leaves_it_off() -> None:
    assert env_tree(TRAEFIK_PROVIDERS_DOCKER="true", TRAEFIK_API="false",
                    TRAEFIK_PROVIDERS_DOCKER_EXPOSEDBYDEFAULT="false") == {
        "providers": {"docker": {"exposedbydefault": False}}}
    assert flags_tree("--api", "--api.insecure=true", "--ping=true") == {
        "api": {"insecure": True}, "ping": {}}
    assert flags_tree("--providers.docker.network=n", "--providers.docker") == {
        "providers": {"docker": {"network": "n"}}}


def test_a_true_inside_an_untyped_section_becomes_a_mapping_when_keys_follow() -> None:
    assert flags_tree("--certificatesResolvers.le.acme.httpChallenge=true",
                      "--certificatesResolvers.le.acme.httpChallenge.entryPoint=web") == {
        "certificatesResolvers": {"le": {"acme": {"httpChallenge": {"entryPoint": "web"}}}}}


def test_numbered_parts_build_lists_but_names_stay_names() -> None:
    assert flags_tree("--entryPoints.0.address=:1",
                      "--entryPoints.web.http.tls.domains[1].main=b",
                      "--entryPoints.web.http.tls.domains[0].main=a") == {
        "entryPoints": {"0": {"address": ":1"},
                        "web": {"http": {"tls": {"domains": [{"main": "a"}, {"main": "b"}]}}}}}


def test_a_value_and_keys_below_it_conflict() -> None:
    with pytest.raises(ConfigLoadError, match="--log.level.x"):
        flags_tree("--log.level=INFO", "--log.level.x=1")


def test_flags_take_their_value_after_an_equals_sign_or_a_space() -> None:
    assert flag_settings(["--a.b=1", "--c.d", "2", "--e"]) == [
        ("--a.b", ("a", "b"), "1"), ("--c.d", ("c", "d"), "2"), ("--e", ("e",), "true")]
    with pytest.raises(ValueError, match="flags look like"):
        flag_settings(["web"])


def test_search_order_is_traefiks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, xdg, cwd = tmp_path / "home", tmp_path / "xdg", tmp_path / "cwd"
    for directory in (home / ".config", xdg, cwd):
        directory.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    environ = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert search_paths(environ)[:3] == ["/etc/traefik/traefik.toml",
                                         "/etc/traefik/traefik.yaml", "/etc/traefik/traefik.yml"]
    assert discover_static_file(environ) is None
    (cwd / "traefik.yml").write_text("log: {}\n")
    assert discover_static_file(environ) == str(cwd / "traefik.yml")
    (cwd / "traefik.toml").write_text("")
    assert discover_static_file(environ) == str(cwd / "traefik.toml")  # toml, yaml, yml
    (home / ".config" / "traefik.yml").write_text("")
    assert discover_static_file(environ) == str(home / ".config" / "traefik.yml")
    (xdg / "traefik.yaml").write_text("")
    assert discover_static_file(environ) == str(xdg / "traefik.yaml")


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment in which no static file is found, run from an empty directory."""
    monkeypatch.chdir(tmp_path)
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


ENV = {"TRAEFIK_ENTRYPOINTS_FROMENV_ADDRESS": ":3"}


def test_flags_win_over_the_environment_which_is_then_ignored_with_a_warning(
        nowhere: dict[str, str]) -> None:
    static, issues, source = read_static(None, ["--entryPoints.fromflags.address=:2"],
                                         nowhere | ENV)
    assert (source.kind, list(static.entry_points)) == ("flags", ["fromflags"])
    assert [(i.severity, i.message.split(" ignored")[0]) for i in issues] == [
        ("warning", "TRAEFIK_ENTRYPOINTS_FROMENV_ADDRESS")]


def test_the_environment_is_read_when_there_is_no_file_and_no_flag(
        nowhere: dict[str, str]) -> None:
    static, issues, source = read_static(None, [], nowhere | ENV)
    assert (source.kind, list(static.entry_points), issues) == ("environment", ["fromenv"], [])
    assert read_static(None, [], nowhere)[2].kind == "none"


def test_a_found_file_wins_over_flags_and_environment(nowhere: dict[str, str]) -> None:
    Path("traefik.yml").write_text("entryPoints:\n  fromfile:\n    address: ':1'\n")
    static, issues, source = read_static(None, ["--entryPoints.fromflags.address=:2"],
                                         nowhere | ENV)
    assert (source.kind, list(static.entry_points)) == ("file", ["fromfile"])
    assert issues[0].message.startswith("--entryPoints.fromflags.address, "
                                        "TRAEFIK_ENTRYPOINTS_FROMENV_ADDRESS ignored")


def test_flags_still_override_a_file_named_with_c(nowhere: dict[str, str],
                                                   tmp_path: Path) -> None:
    path = tmp_path / "static.yml"
    path.write_text("entryPoints:\n  fromfile:\n    address: ':1'\n")
    static, _, source = read_static(str(path), ["--entryPoints.fromfile.address=:2"],
                                    nowhere | ENV)
    assert (source.kind, static.entry_points["fromfile"].address) == ("file", ":2")


def test_a_bad_value_in_a_variable_is_an_error_naming_the_key(nowhere: dict[str, str]) -> None:
    with pytest.raises(ConfigLoadError) as caught:
        read_static(None, [], nowhere | {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": "80"})
    [issue] = caught.value.issues
    assert issue.path == "entryPoints.web.address"
    assert issue.message.endswith("missing port (write \":PORT\" or \"HOST:PORT\") "
                                  "(set by TRAEFIK_ENTRYPOINTS_WEB_ADDRESS)")


def test_an_unknown_key_in_a_variable_is_a_warning(nowhere: dict[str, str]) -> None:
    _, issues, _ = read_static(None, [], nowhere | {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": ":80",
                                                    "TRAEFIK_LOG_BOGUS": "1"})
    assert [(i.source, i.path) for i in issues] == [("environment", "log.bogus")]
    assert issues[0].message.endswith("(set by TRAEFIK_LOG_BOGUS)")


NAME = st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=8)


@given(st.dictionaries(st.tuples(NAME, NAME), st.text(string.printable, max_size=12),
                       max_size=6))
def test_every_entry_point_variable_lands_at_its_lower_case_path(
        entries: dict[tuple[str, str], str]) -> None:
    # Keys start with X: no EntryPoint field (a section, where true means "on") is named so.
    environ = {f"TRAEFIK_ENTRYPOINTS_{name}_X{key}": value
               for (name, key), value in entries.items()}
    tree = tree_from_settings(env_settings(environ), "environment")
    for (name, key), value in entries.items():
        node = tree["entrypoints"]
        assert isinstance(node, dict)
        expected = {"true": True, "false": False}.get(value.strip().lower(), value)
        assert node[name.lower()][f"x{key.lower()}"] == expected
