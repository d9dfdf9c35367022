"""Command line: run, check, explain, healthcheck, demo, whoami, version."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from switchyard import __version__, eventloop
from switchyard.config.loader import (
    DYNAMIC_SECTIONS,
    ConfigIssue,
    ConfigLoadError,
    config_files,
    config_sections,
    key_locations,
    load_dynamic,
    static_from_dict,
)
from switchyard.config.sources import (
    StaticSource,
    discover_static_file,
    env_settings,
    read_static,
)
from switchyard.config.static import FileProvider, Providers, StaticConfig
from switchyard.observability.logsetup import configure_logging

if TYPE_CHECKING:
    from switchyard.runtime import Runtime

FLAG_HELP = """Traefik-style flags override the static file, e.g.
--entryPoints.tcp.address=:9000 --providers.file.filename=dynamic.yml --log.level=INFO"""


def read_static_config(configfile: str | None, flags: list[str]
                       ) -> tuple[StaticConfig, list[ConfigIssue], StaticSource]:
    """The static config from the one source Traefik reads, and what is wrong in it.

    A file (-c, else traefik.yml|yaml|toml found where Traefik looks), else flags, else
    TRAEFIK_* / SWITCHYARD_* variables. Raises ClickException when it is unusable.
    """
    try:
        return read_static(configfile, flags)
    except ConfigLoadError as exc:
        raise click.ClickException(str(exc)) from exc


def load_static_config(configfile: str | None, flags: list[str]) -> StaticConfig:
    """The static config from its one source; exits with a message when it is unusable."""
    static, issues, source = read_static_config(configfile, flags)
    if source.kind == "file" and not configfile:
        click.echo(f"note: static configuration read from {source.path} (no -c given)",
                   err=True)
    for issue in issues:
        at = f"{issue.path}: " if issue.path else ""
        click.echo(f"{issue.severity}: {issue.source}: {at}{issue.message}", err=True)
    return static


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchyard")
def main() -> None:
    """Switchyard: a TCP edge router that speaks Traefik's TCP configuration."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              epilog=FLAG_HELP)
@click.option("-c", "--configfile", "--configFile", type=click.Path(dir_okay=False),
              help="Static configuration (traefik.yml / traefik.toml).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes sharing every TCP port via SO_REUSEPORT (one event loop each).")
@click.pass_context
def run(ctx: click.Context, configfile: str | None, workers: int) -> None:
    """Run the router."""
    from switchyard.server import Switchyard

    static = load_static_config(configfile, list(ctx.args))
    if not static.entry_points:
        raise click.ClickException("no entry point configured: add entryPoints.<name>.address "
                                   "to the static config, --entryPoints.<name>.address=:PORT "
                                   "or TRAEFIK_ENTRYPOINTS_<NAME>_ADDRESS=:PORT")
    log_cfg = static.log
    try:
        configure_logging(log_cfg.level, log_cfg.format, log_cfg.file_path)
    except OSError as exc:
        raise click.ClickException(f"log.filePath: cannot open {log_cfg.file_path!r}: {exc}") \
            from exc
    _log_compiled_modules()
    if workers > 1:
        from switchyard.workers import run_workers

        def serve(index: int) -> None:
            eventloop.run(Switchyard(static, worker=index, reuse_port=True).serve())

        sys.exit(run_workers(workers, serve))
    try:
        eventloop.run(Switchyard(static).serve())
    except ConfigLoadError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


def _log_compiled_modules() -> None:
    from switchyard.compiled import compiled_modules, describe, stale_modules

    log = logging.getLogger("switchyard")
    if compiled_modules():
        log.info("switchyard %s, %s", __version__, describe())
    stale = stale_modules()
    if stale:
        log.warning("compiled modules built before their source last changed (the build runs, "
                    "not the edit): %s; rebuild them (make compiled) or remove them (make pure)",
                    ", ".join(stale))


class _Captured(logging.Handler):
    """Keeps what start-up logs, for `check` to print with the rest."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _load_runtime(static: StaticConfig) -> tuple[Runtime, list[logging.LogRecord]]:
    """A runtime built from every provider as `run` starts with, and what start-up logged."""
    from switchyard.build import build_runtime
    from switchyard.server import Switchyard

    captured = _Captured()
    logger = logging.getLogger("switchyard")
    logger.handlers[:], logger.propagate = [captured], False
    logger.setLevel(logging.WARNING)
    try:
        server = Switchyard(static)
        configs, issues = server.load_configs()
    except ConfigLoadError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise click.ClickException(str(exc)) from exc
    finally:
        # Problems are printed by the command itself; the builder's log lines would repeat them.
        configure_logging("FATAL")
    return build_runtime(static, configs, issues, resolvers=server.resolvers), captured.records


def _runtime_for(configfile: str) -> tuple[StaticConfig, Runtime]:
    """Static config and a runtime built from every provider, as `run` would start with."""
    static = load_static_config(configfile, [])
    return static, _load_runtime(static)[0]


class _UncheckedResolver:
    """A certificate resolver a router names, taken as declared (no static config says)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def certificates(self) -> list[tuple[bytes, bytes]]:
        return []


# Where routers that name no entry point land when no static configuration is given.
_ANY_ENTRY_POINT = "(default)"


def _standalone(path: str) -> tuple[StaticConfig, Runtime]:
    """A dynamic file checked on its own: entry points and resolvers are taken as named."""
    from switchyard.build import build_runtime

    configure_logging("FATAL")
    try:
        config, issues = load_dynamic(filename=path)
    except ConfigLoadError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise click.ClickException(str(exc)) from exc
    routers = config.tcp.routers.values()
    names = {name for router in routers for name in router.entry_points}
    if not names or any(not router.entry_points for router in routers):
        names.add(_ANY_ENTRY_POINT)
    static, _ = static_from_dict(
        {"entryPoints": {name: {"address": ":0"} for name in sorted(names)}}, "check")
    resolvers = {router.tls.cert_resolver: _UncheckedResolver(router.tls.cert_resolver)
                 for router in routers if router.tls is not None and router.tls.cert_resolver}
    return static, build_runtime(static, {"file": config}, issues, resolvers=resolvers)


@dataclass(frozen=True)
class _Problem:
    """One line of `check` output."""

    source: str
    line: int | None
    severity: str
    text: str  # "key.path: message"

    def __str__(self) -> str:
        at = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{at}: {self.severity}: {self.text}"


class _Locator:
    """Finds the file and line where a key is defined: the static file, the file provider's."""

    def __init__(self, static_source: str, file_provider: FileProvider | None) -> None:
        self.static_source = static_source
        self._static: dict[tuple[str | int, ...], int | None] = {}
        self._files: list[tuple[str, dict[tuple[str | int, ...], int | None]]] = []
        try:
            if static_source.endswith((".yml", ".yaml", ".toml")):
                self._static = key_locations(static_source)
            if file_provider is not None:
                for path in config_files(file_provider.filename, file_provider.directory):
                    self._files.append((path, key_locations(path)))
        except ConfigLoadError:
            pass  # the loader has reported it already

    def element(self, provider: str, path: str) -> tuple[str, int | None]:
        """(file, line) of `path` (e.g. "tcp.routers.db") as `provider` defines it."""
        key = tuple(part.lower() for part in path.split("."))
        if provider == "file":
            # A name defined in several files belongs to the first one (loader rule).
            for source, locations in self._files:
                if key in locations:
                    return source, locations[key]
        return provider, None

    def static(self, path: str) -> tuple[str, int | None]:
        """(static file, line) of `path`, e.g. "entryPoints.web"."""
        return self.static_source, self._static.get(tuple(p.lower() for p in path.split(".")))


def _tls_severity(problem: str) -> str:
    """Stores and generated certificates Traefik ignores too warn; a certificate left out errs."""
    if any(mark in problem for mark in ("; store ignored", "; certificate ignored",
                                        ".defaultGeneratedCert:")):
        return "warning"
    return "error"


_SECTIONS = {"router": "tcp.routers", "service": "tcp.services", "middleware": "tcp.middlewares"}


def _check_problems(static: StaticConfig, runtime: Runtime, locate: _Locator,
                    static_issues: list[ConfigIssue],
                    logged: list[logging.LogRecord]) -> list[_Problem]:
    """Every problem `check` reports, each at the file and line it comes from."""
    from switchyard.diagnostics import diagnose

    problems = [_Problem(i.source, i.line, i.severity,
                         f"{i.path}: {i.message}" if i.path else i.message)
                for i in static_issues]
    for record in logged:
        severity = "error" if record.levelno >= logging.ERROR else "warning"
        problems.append(_Problem(locate.static_source, None, severity, record.getMessage()))
    if not static.entry_points:
        problems.append(_Problem(locate.static_source, None, "error", (
            "entryPoints: no entry point configured: add entryPoints.<name>.address to the "
            "static config or --entryPoints.<name>.address=:PORT")))
    for issue in runtime.issues:
        source, line = issue.source, issue.line
        if line is None and issue.path.partition(".")[0].lower() in DYNAMIC_SECTIONS:
            source, line = locate.element(issue.source, issue.path)
        problems.append(_Problem(source, line, issue.severity, f"{issue.path}: {issue.message}"))
    for problem in runtime.tls_problems:
        source, line = locate.element("file", problem.partition(": ")[0])
        problems.append(_Problem("tls" if line is None else source, line,
                                 _tls_severity(problem), problem))
    http = runtime.http
    for section, group in (("tcp.routers", runtime.routers), ("tcp.services", runtime.services),
                           ("tcp.middlewares", runtime.middlewares),
                           ("http.routers", http.routers), ("http.services", http.services),
                           ("http.middlewares", http.middlewares)):
        for element in group.values():
            path = f"{section}.{element.name.rpartition('@')[0]}"
            source, line = locate.element(element.provider, path)
            severity = "error" if element.status == "disabled" else "warning"
            for error in element.errors:
                problems.append(_Problem(source, line, severity,
                                         f'{path}: {element.kind} "{element.name}": {error}'))
    for finding in diagnose(runtime, static):
        if finding.kind == "entryPoint":
            path = f"entryPoints.{finding.name}"
            source, line = locate.static(path)
        else:
            name, _, provider = finding.name.rpartition("@")
            path = f"{_SECTIONS[finding.kind]}.{name}"
            source, line = locate.element(provider, path)
        problems.append(_Problem(source, line, "warning", f"{path}: {finding}"))
    return problems


CHECK_HELP = """Give the static configuration with -c and/or Traefik-style flags, as for `run`:
--entryPoints.tcp.address=:9000 --providers.file.filename=dynamic.yml. A dynamic file
given first (switchyard check dynamic.yml) is checked on its own, or against the entry
points and resolvers of the static configuration when one is given too."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              epilog=CHECK_HELP, options_metavar="[DYNAMIC_FILE] [-c STATIC_FILE] [FLAGS]")
@click.option("-c", "--configfile", "--configFile", type=click.Path(dir_okay=False),
              help="Static configuration (traefik.yml / traefik.toml).")
@click.pass_context
def check(ctx: click.Context, configfile: str | None) -> None:
    """Print every configuration problem with file:line; exit 1 if anything is disabled."""
    flags = list(ctx.args)
    # A leading argument that is not a flag is a dynamic file; later ones are flag values.
    dynamic = flags.pop(0) if flags and not flags[0].startswith("-") else None
    if not (configfile or flags or dynamic) and not (
            discover_static_file(os.environ) or env_settings(os.environ)):
        raise click.UsageError("give the static configuration (-c traefik.yml and/or flags "
                               "such as --entryPoints.tcp.address=:9000, or TRAEFIK_* "
                               "variables), or a dynamic file: switchyard check dynamic.yml")
    if dynamic and not (configfile or flags):
        try:
            static_keys, _ = config_sections(dynamic)
        except ConfigLoadError as exc:
            raise click.ClickException(str(exc)) from exc
        if static_keys:
            # It is (also) a static configuration: check it as `run -c` reads it.
            configfile, dynamic = dynamic, None
    static_issues: list[ConfigIssue] = []
    logged: list[logging.LogRecord] = []
    standalone = dynamic is not None and not (configfile or flags)
    if dynamic is not None and standalone:
        static, runtime = _standalone(dynamic)
        locate = _Locator("(no static config)", FileProvider(filename=dynamic))
    else:
        static, static_issues, source = read_static_config(configfile, flags)
        if dynamic is not None:
            static = static.model_copy(update={"providers": Providers(
                file=FileProvider(filename=dynamic, watch=False))})
        runtime, logged = _load_runtime(static)
        locate = _Locator(source.path or source.kind, static.providers.file)
    problems = _check_problems(static, runtime, locate, static_issues, logged)
    for problem in sorted(problems, key=lambda p: (p.source, p.line or 0, p.text)):
        click.echo(str(problem))
    http = runtime.http
    groups = (runtime.routers, runtime.services, runtime.middlewares,
              http.routers, http.services, http.middlewares)
    disabled = [e for group in groups for e in group.values() if e.status == "disabled"]
    broken = bool(disabled) or any(p.severity == "error" for p in problems)
    warnings = sum(1 for p in problems if p.severity == "warning")
    if standalone:
        click.echo(f"note: {dynamic} was checked without a static configuration, so entry "
                   "point and certificate resolver names were taken as they are; add "
                   "-c traefik.yml to check them too")
    verdict = "errors found" if broken else "configuration OK" + (
        f" with {warnings} warning{'s' if warnings != 1 else ''}" if warnings else "")
    counts = f"{len(runtime.routers)} routers, {len(runtime.services)} services, " \
             f"{len(runtime.middlewares)} middlewares"
    if http.routers or http.services or http.middlewares:
        counts = f"TCP: {counts}; HTTP: {len(http.routers)} routers, " \
                 f"{len(http.services)} services, {len(http.middlewares)} middlewares"
    click.echo(f"{counts}: {verdict}")
    sys.exit(1 if broken else 0)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              epilog=FLAG_HELP)
@click.option("-c", "--configfile", "--configFile", type=click.Path(dir_okay=False),
              help="Static configuration (traefik.yml / traefik.toml).")
@click.pass_context
def healthcheck(ctx: click.Context, configfile: str | None) -> None:
    """Ask the running instance's /ping (ping must be on); exit 0 when it answers 200, else 1.

    The static configuration is read as `run` reads it, so a container's HEALTHCHECK can
    run `switchyard healthcheck` with the same file, flags or TRAEFIK_* variables.
    """
    from switchyard.healthcheck import check_health

    try:
        static, _, _ = read_static_config(configfile, list(ctx.args))
    except click.ClickException as exc:
        click.echo(f"Error calling healthcheck: {exc.message}")
        sys.exit(1)
    healthy, line = check_health(static)
    click.echo(line)
    sys.exit(0 if healthy else 1)


@main.command()
@click.option("-c", "--configfile", "--configFile", type=click.Path(dir_okay=False), required=True)
@click.option("--entrypoint", "--entryPoint", "entrypoint", required=True,
              help="The entry point the connection arrives on.")
@click.option("--client-ip", required=True, help="The client's address, e.g. 203.0.113.7.")
@click.option("--sni", help="Server name in the TLS ClientHello (implies --tls).")
@click.option("--alpn", multiple=True, help="ALPN protocol offered; repeat for several "
              "(implies --tls).")
@click.option("--tls/--no-tls", "tls", default=None,
              help="Whether the client starts with a TLS ClientHello "
                   "[default: TLS when --sni or --alpn is given].")
@click.option("--postgres", is_flag=True,
              help="The client sends a Postgres SSLRequest before its ClientHello.")
@click.option("--host", default="", help="HTTP: the request's Host [default: the SNI].")
@click.option("--path", default="/", show_default=True,
              help="HTTP: the request path, with its query if any.")
@click.option("--method", default="GET", show_default=True, help="HTTP: the request method.")
@click.option("--header", "headers", multiple=True,
              help='HTTP: a request header as "Name: value"; repeat for several.')
@click.option("--offline", is_flag=True,
              help="Answer from the configuration alone; do not ask the running instance.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain(configfile: str, entrypoint: str, client_ip: str, sni: str | None,
            alpn: tuple[str, ...], tls: bool | None, postgres: bool, host: str, path: str,
            method: str, headers: tuple[str, ...], offline: bool, as_json: bool) -> None:
    """Which router would take such a connection, why, and what would happen next.

    When the configuration enables the API, the running instance is asked, so
    server health and open connections are the ones it routes with now.
    """
    import json

    from switchyard.explain import ExplainError, Explanation, render_text
    from switchyard.explain import explain as explain_connection
    from switchyard.explain_http import RequestQuestion

    pairs = []
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f'"{header}": write it as "Name: value"',
                                     param_hint="--header")
        pairs.append((name.strip(), value.strip()))
    if not path.startswith("/"):
        raise click.BadParameter(f'"{path}": a path starts with "/"', param_hint="--path")
    question = RequestQuestion(host, path, method, tuple(pairs))
    static, runtime = _runtime_for(configfile)
    wants_tls = bool(sni or alpn or postgres) if tls is None else tls
    found: Explanation | None = None
    note = "offline: answered from the configuration alone" if offline else ""
    api = None if offline else _api_address(static)
    if api is not None:
        found, note = _ask_instance(api, entrypoint, client_ip, wants_tls, sni, alpn, postgres,
                                    question)
    if found is None:
        try:
            found = explain_connection(runtime, static, entrypoint, client_ip, tls=wants_tls,
                                       sni=sni, alpn=alpn, postgres=postgres, request=question)
        except ExplainError as exc:
            raise click.UsageError(str(exc)) from exc
    if note:
        click.echo(f"note: {note}", err=True)
    click.echo(json.dumps(found.as_json(), indent=2) if as_json else render_text(found))


def _api_address(static: StaticConfig) -> str | None:
    """http://host:port of the API a running instance of this configuration serves, if any."""
    from switchyard.addresses import host_port
    from switchyard.config.static import parse_entry_point_address
    from switchyard.internal import internal_services

    for name, services in internal_services(static).items():
        if "api" in services:
            ep = static.entry_points.get(name)
            host, port, _ = parse_entry_point_address(ep.address if ep else ":8080")
            return f"http://{host_port(host if host not in ('', '0.0.0.0', '::') else '127.0.0.1', port)}"
    return None


def _ask_instance(api: str, entrypoint: str, client_ip: str, tls: bool, sni: str | None,
                  alpn: tuple[str, ...], postgres: bool, question: Any) -> tuple[Any, str]:
    """The running instance's own explanation, or None and why it could not be had."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from switchyard.explain import Explanation

    query = urllib.parse.urlencode(
        [("entryPoint", entrypoint), ("clientIP", client_ip), ("tls", str(tls).lower()),
         ("postgres", str(postgres).lower()), *(("sni", sni),) * bool(sni),
         *(("alpn", a) for a in alpn), *(("host", question.host),) * bool(question.host),
         ("path", question.path), ("method", question.method),
         *(("header", f"{n}: {v}") for n, v in question.headers)])
    url = f"{api}/api/explain?{query}"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # our own API, on loopback
            return Explanation.from_json(json.load(answer)), ""
    except urllib.error.HTTPError as exc:
        if exc.code == 400:
            raise click.UsageError(json.load(exc).get("message", str(exc))) from exc
        problem = f"HTTP {exc.code}"
    except (OSError, ValueError, KeyError) as exc:
        problem = str(getattr(exc, "reason", exc))
    return None, (f"the running instance did not answer at {api} ({problem}): answered from "
                  "the configuration alone, so server health and open connections are unknown")


@main.command()
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--name", default="whoami", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
def whoami(port: int, name: str, host: str, tls_cert: str | None, tls_key: str | None) -> None:
    """A tiny backend: greets with its name and your address, then echoes."""
    from switchyard.whoami import serve_whoami, server_tls_context

    tls = server_tls_context(tls_cert, tls_key or tls_cert) if tls_cert else None
    try:
        eventloop.run(serve_whoami(name, host, port, tls))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--base-port", type=int, default=9000, show_default=True,
              help="Entry points listen on this port and the next five (the last one serves "
                   "the API, the dashboard, ping and metrics).")
def demo(base_port: int) -> None:
    """Run Switchyard on an embedded demo config with its own whoami backends."""
    from switchyard.demo import run_demo

    configure_logging("INFO")
    try:
        eventloop.run(run_demo(base_port))
    except OSError as exc:
        raise click.ClickException(f"cannot start the demo: {exc} (try --base-port)") from exc


@main.command()
def version() -> None:
    """Print the version, and which modules run compiled (setup.py's optional mypyc build)."""
    from switchyard.compiled import describe

    click.echo(f"switchyard {__version__} ({describe()})")
