"""Command line: run, check, explain, demo, whoami, version."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from switchyard import __version__, eventloop
from switchyard.config.loader import ConfigLoadError, load_static, static_from_dict
from switchyard.config.static import StaticConfig
from switchyard.observability.logsetup import configure_logging

if TYPE_CHECKING:
    from switchyard.build import Runtime

FLAG_HELP = """Traefik-style flags override the static file, e.g.
--entryPoints.tcp.address=:9000 --providers.file.filename=dynamic.yml --log.level=INFO"""


def parse_dotted_flags(args: list[str]) -> dict[str, Any]:
    """`--a.b.c=v` / `--a.b.c v` / `--a.b.c` (true) into a nested dict, as Traefik's CLI does."""
    tree: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) <= 2:
            raise click.UsageError(f"unexpected argument {arg!r}: flags look like --entryPoints.web.address=:80")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if index + 1 < len(args) and not args[index + 1].startswith("--"):
                value = args[index + 1]
                index += 1
            else:
                value = "true"
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise click.UsageError(f"flag --{key} conflicts with another flag")
            node = child
        node[parts[-1]] = {"true": True, "false": False}.get(value.lower(), value)
        index += 1
    return tree


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        existing = next((k for k in merged if k.lower() == key.lower()), key)
        if isinstance(value, dict) and isinstance(merged.get(existing), dict):
            merged[existing] = _merge(merged[existing], value)
        else:
            merged[existing] = value
    return merged


def load_static_config(configfile: str | None, flags: list[str]) -> StaticConfig:
    """The static config from a file and/or flags; exits with a message when it is unusable."""
    try:
        raw: dict[str, Any] = {}
        if configfile:
            static, issues = load_static(configfile)
            for issue in issues:
                click.echo(f"{issue.severity}: {issue.source}: {issue.path}: {issue.message}", err=True)
            if not flags:
                return static
            raw = static.model_dump(by_alias=True, exclude_unset=True)
        static, issues = static_from_dict(_merge(raw, parse_dotted_flags(flags)), "flags")
        for issue in issues:
            click.echo(f"{issue.severity}: {issue.source}: {issue.path}: {issue.message}", err=True)
        return static
    except ConfigLoadError as exc:
        raise click.ClickException(str(exc)) from exc


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
                                   "to the static config or --entryPoints.<name>.address=:PORT")
    log_cfg = static.log
    try:
        configure_logging(log_cfg.level, log_cfg.format, log_cfg.file_path)
    except OSError as exc:
        raise click.ClickException(f"log.filePath: cannot open {log_cfg.file_path!r}: {exc}") \
            from exc
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


def _runtime_for(configfile: str) -> tuple[StaticConfig, Runtime]:
    """Static config and a runtime built from every provider, as `run` would start with."""
    from switchyard.build import build_runtime
    from switchyard.server import Switchyard

    # Problems are printed by the command itself; the builder's log lines would repeat them.
    configure_logging("FATAL")
    static = load_static_config(configfile, [])
    try:
        configs, issues = Switchyard(static).load_configs()
    except ConfigLoadError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise click.ClickException(str(exc)) from exc
    return static, build_runtime(static, configs, issues)


def _definitions(static: StaticConfig) -> dict[tuple[str, str], tuple[str, int | None]]:
    """(section, qualified name) -> (file, line) where the file provider defines it."""
    from switchyard.config.loader import _config_files, _read_document

    file_cfg = static.providers.file
    if file_cfg is None:
        return {}
    paths = _config_files(file_cfg.directory) if file_cfg.directory else (
        [file_cfg.filename] if file_cfg.filename else [])
    found: dict[tuple[str, str], tuple[str, int | None]] = {}
    for path in paths:
        try:
            document = _read_document(path)
        except ConfigLoadError:
            continue  # already reported by the provider
        tcp = document.data.get("tcp")
        for section in ("routers", "services", "middlewares"):
            elements = tcp.get(section) if isinstance(tcp, dict) else None
            for name in elements if isinstance(elements, dict) else ():
                # A name defined in several files belongs to the first one (loader rule).
                found.setdefault((section, f"{name}@file"), (
                    path, document.lines.get(("tcp", section, str(name).lower()))))
    return found


@main.command()
@click.option("-c", "--configfile", "--configFile", type=click.Path(dir_okay=False), required=True)
def check(configfile: str) -> None:
    """Load the configuration, print every problem with file:line, exit 1 if anything is disabled."""
    static, runtime = _runtime_for(configfile)
    where = _definitions(static)
    problems: list[tuple[str, int, str]] = []
    for issue in runtime.issues:
        problems.append((issue.source, issue.line or 0, str(issue)))
    for section, group in (("routers", runtime.routers), ("services", runtime.services),
                           ("middlewares", runtime.middlewares)):
        for element in group.values():
            source, line = where.get((section, element.name), (element.provider, None))
            path = f"tcp.{section}.{element.name.rpartition('@')[0]}"
            severity = "error" if element.status == "disabled" else "warning"
            at = source if line is None else f"{source}:{line}"
            for error in element.errors:
                text = f'{at}: {severity}: {path}: {element.kind} "{element.name}": {error}'
                problems.append((source, line or 0, text))
    for _, _, text in sorted(problems):
        click.echo(text)
    disabled = [e for group in (runtime.routers, runtime.services, runtime.middlewares)
                for e in group.values() if e.status == "disabled"]
    broken = disabled or any(i.severity == "error" for i in runtime.issues)
    click.echo(f"{len(runtime.routers)} routers, {len(runtime.services)} services, "
               f"{len(runtime.middlewares)} middlewares: "
               + ("errors found" if broken else "configuration OK"))
    sys.exit(1 if broken else 0)


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
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain(configfile: str, entrypoint: str, client_ip: str, sni: str | None,
            alpn: tuple[str, ...], tls: bool | None, as_json: bool) -> None:
    """Which router would take such a connection, why, and what would happen next."""
    import json

    from switchyard.explain import ExplainError, render_text
    from switchyard.explain import explain as explain_connection

    static, runtime = _runtime_for(configfile)
    try:
        found = explain_connection(runtime, static, entrypoint, client_ip,
                                   tls=bool(sni or alpn) if tls is None else tls,
                                   sni=sni, alpn=alpn)
    except ExplainError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(found.as_json(), indent=2) if as_json else render_text(found))


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
              help="Entry points listen on this port and the next three.")
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
    """Print the version."""
    click.echo(f"switchyard {__version__}")
