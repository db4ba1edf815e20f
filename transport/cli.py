"""The ``easel`` command line: ``serve``, ``db``, ``apikey``, ``client``, and the
commands other packages add through the ``easel.commands`` entry-point group
(``easel bench`` comes from ``ops.bench``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from engine.errors import EaselError
from engine.logcontext import configure_logging
from engine.metrics import new_registry
from engine.settings import Settings, SettingsError, load_settings
from engine.storage import NewApiKey, migrations, open_store
from transport import client_cli
from transport.app import create_app
from transport.browser import RedactingAccessLogger
from transport.commands import COMMAND_GROUP, Command
from transport.serving import serve

__all__ = ["main"]

log = logging.getLogger(__name__)


def _commands() -> dict[str, Command]:
    """``easel client`` and every command found in the ``easel.commands`` group."""
    found = {client_cli.COMMAND.name: client_cli.COMMAND}
    for entry in entry_points(group=COMMAND_GROUP):
        try:
            command = entry.load()
        except ImportError as error:  # e.g. an optional dependency is missing
            log.debug("easel command %s unavailable: %s", entry.name, error)
            continue
        if isinstance(command, Command) and command.name not in found:
            found[command.name] = command
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="easel", description="Realtime engine for canvases.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the engine (flags beat EASEL_* variables)")
    serve.add_argument("--host", help="address to listen on (EASEL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (EASEL_PORT, default 8080)")
    serve.add_argument("--data-dir", help="where data lives (EASEL_DATA_DIR, default ./data)")
    serve.add_argument("--log-level", help="DEBUG, INFO … (EASEL_LOG_LEVEL, default INFO)")
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or one JSON object per line (EASEL_LOG_FORMAT, default text)",
    )
    serve.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        help="turn authentication off; only on a loopback address (EASEL_INSECURE)",
    )
    db = commands.add_parser("db", help="database schema (SQL backends)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("--revision", default="head", help="target revision (default head)")
    current = db_commands.add_parser("current", help="print the schema revision in force")
    for command in (upgrade, current):
        command.add_argument("--data-dir", help="where the embedded SQLite lives (EASEL_DATA_DIR)")
    keys = commands.add_parser("apikey", help="issue, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="issue a key; its token is shown once")
    create.add_argument("name")
    create.add_argument(
        "--role",
        choices=("admin", "client", "metrics"),
        default="client",
        help="admin: everything; client: its own sessions, projects, media; metrics: scrape",
    )
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    for command in (create, revoke, listing):
        command.add_argument("--data-dir", help="where the embedded SQLite lives (EASEL_DATA_DIR)")
    for extra in _commands().values():
        extra.add_arguments(commands.add_parser(extra.name, help=extra.help))
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            {
                "host": args.host,
                "port": args.port,
                "data_dir": args.data_dir,
                "log_level": args.log_level,
                "log_format": args.log_format,
                "insecure": args.insecure,
            }
        )
    except SettingsError as error:
        return _refused(error)
    configure_logging(settings.log_level, settings.log_format)
    say = _say(settings)
    try:
        loop = _event_loop(settings)
    except SettingsError as error:
        return _refused(error)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        serve(
            create_app(settings, announce=say),
            settings,
            loop_factory=None if loop is None else lambda: loop,
            access_log_class=RedactingAccessLogger,
            announce=say,
        )
    except EaselError as error:  # the engine could not start: its data dir in use …
        print(f"easel: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the address is taken, or not this machine's
        print(f"easel: cannot listen on {settings.host}:{settings.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _say(settings: Settings) -> Callable[[str], None]:
    """How ``serve`` tells the operator something (where it listens, the admin key's
    URL): printed to stdout, or as a log line where logs are JSON, so that every line
    the process writes parses."""
    if settings.log_format == "json":
        return lambda message: log.warning("%s", message)
    return lambda message: print(message, flush=True)


def _refused(error: SettingsError) -> int:
    print(f"easel: {error}", file=sys.stderr)
    return 2


def _event_loop(settings: Settings) -> asyncio.AbstractEventLoop | None:
    """A uvloop loop when settings want one, else ``None`` (aiohttp's asyncio loop).

    uvloop is optional (there is none on Windows): without it the default falls back
    to asyncio, and ``EASEL_EVENT_LOOP=uvloop`` asked for explicitly raises
    ``SettingsError``.
    """
    if settings.event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        if "event_loop" in settings.model_fields_set:
            raise SettingsError(
                "EASEL_EVENT_LOOP=uvloop, but uvloop is not installed "
                "(install it, or set EASEL_EVENT_LOOP=asyncio)"
            ) from None
        log.info("uvloop is not installed: using the asyncio event loop")
        return None
    return uvloop.new_event_loop()


def _db(args: argparse.Namespace) -> int:
    """``easel db upgrade|current`` against ``EASEL_DATABASE_URL`` (or the embedded file)."""
    try:
        settings = load_settings({"data_dir": getattr(args, "data_dir", None)})
    except SettingsError as error:
        print(f"easel: {error}", file=sys.stderr)
        return 2
    url = settings.sql_url
    if settings.database_url is None and not (settings.data_dir / "easel.db").exists():
        if args.db_command != "upgrade":
            print(f"easel: no database in {settings.data_dir}", file=sys.stderr)
            return 1
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.db_command == "upgrade":
            asyncio.run(migrations.upgrade(url, args.revision))
        revision = asyncio.run(migrations.current(url))
    except Exception as error:  # a CLI reports, it does not dump a traceback
        print(f"easel: the database failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"schema revision: {revision or 'none'} (newest: {migrations.head()})")
    return 0


async def _apikey(args: argparse.Namespace, settings: Settings) -> None:
    store = await open_store(settings, new_registry(), own_data_dir=False)
    try:
        if args.key_command == "create":
            key, token = await store.api_keys.create(NewApiKey(name=args.name, role=args.role))
            print(f"{key.id}\t{key.name}\t{key.role}\n{token}\n(the token is shown only now)")
        elif args.key_command == "revoke":
            await store.api_keys.delete(args.key_id)
            print(f"revoked {args.key_id}")
        else:
            page = await store.api_keys.list(limit=500)
            for key in page.items:
                print(f"{key.id}\t{key.name}\t{key.role}\t{key.created_at.isoformat()}")
    finally:
        await store.close()


def _keys(args: argparse.Namespace) -> int:
    """``easel apikey create|list|revoke`` against the configured store."""
    try:
        settings = load_settings({"data_dir": args.data_dir})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_apikey(args, settings))
    except (SettingsError, EaselError) as error:
        print(f"easel: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "db":
        return _db(args)
    if args.command == "apikey":
        return _keys(args)
    extra = _commands().get(args.command)
    if extra is not None:
        return extra.run(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
