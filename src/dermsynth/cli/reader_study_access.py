"""``dermsynth reader-study invite add|revoke|renew`` and ``reader-study admin rotate``: who may
get into a reader study (see :mod:`dermsynth.reader_study.access`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError


class InviteGroup(TyperGroup):
    """``invite STUDY --name X`` (the last release's spelling) still adds readers, with a line
    naming ``invite add``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            c.deprecation("`dermsynth reader-study invite STUDY`", "`dermsynth reader-study invite add STUDY`")
            args = ["add", *args]
        return super().parse_args(ctx, args)


invite_app = typer.Typer(cls=InviteGroup, no_args_is_help=True,
                         help="Readers' invitations: add readers (their links), revoke a link, renew it.")
admin_app = typer.Typer(no_args_is_help=True, help="The admin token: rotate it.")

StudyArg = typer.Argument(..., metavar="READER_STUDY", help="The reader-study folder `reader-study create` wrote.")
BaseUrlOpt = typer.Option("http://localhost:8000", help="Where the study will be served.")
NamesOpt = typer.Option(..., "--name", help="Reader name (repeatable).")


def _database(study: Path):
    from dermsynth.reader_study import database as db

    return db.connect(db.existing_study(study) / db.DB_NAME)


def _link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/r/{token}"


def _for_each_reader(study: Path, names: list[str], act: Callable) -> dict:
    """``act(connection, name)`` for each reader named, in one connection; a ValueError (no such
    reader, a name taken) ends it as a ConfigError naming the reader."""
    conn = _database(study)
    try:
        out = {}
        for name in names:
            try:
                out[name] = act(conn, name)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return out
    finally:
        conn.close()


def _emit_links(links: dict[str, str], as_json: bool, note: str = "") -> None:
    c.emit({"links": links}, as_json, "\n".join(f"{n}: {u}{note}" for n, u in links.items()))


@invite_app.command("add")
@c.handles_errors
def add(study: Path = StudyArg, name: list[str] = NamesOpt, base_url: str = BaseUrlOpt, as_json: bool = c.JsonOpt):
    """Create readers and print their invite links (shown once; only a hash is stored)."""
    from dermsynth.reader_study import database as db

    _emit_links(_for_each_reader(study, name, lambda conn, n: _link(base_url, db.add_reader(conn, n))), as_json)


@invite_app.command("revoke")
@c.handles_errors
def revoke(study: Path = StudyArg, name: list[str] = NamesOpt, as_json: bool = c.JsonOpt):
    """Stop a reader's link from working (a link sent to the wrong person, a reader who left); the
    answers they gave stay in the study. `invite renew` gives them a new link."""
    from dermsynth.reader_study import access

    _for_each_reader(study, name, access.revoke_invite)
    c.emit({"revoked": name}, as_json, f"revoked the invitation of {', '.join(name)}; their answers are kept")


@invite_app.command("renew")
@c.handles_errors
def renew(study: Path = StudyArg, name: list[str] = NamesOpt, base_url: str = BaseUrlOpt, as_json: bool = c.JsonOpt):
    """A new link for a reader, replacing the old one (revoked or not): they go on where they were."""
    from dermsynth.reader_study import access

    links = _for_each_reader(study, name, lambda conn, n: _link(base_url, access.renew_invite(conn, n)))
    _emit_links(links, as_json, " (the old link no longer works)")


@admin_app.command("rotate")
@c.handles_errors
def rotate(study: Path = StudyArg, as_json: bool = c.JsonOpt):
    """A new admin token (shown once): the old one stops working and every admin session ends, at
    once, also on a server that is running."""
    from dermsynth.reader_study import access

    conn = _database(study)
    try:
        token = access.set_admin_token(conn)
    finally:
        conn.close()
    c.emit({"admin_token": token}, as_json, f"admin token: {token} (keep it; shown once) — the old one no longer "
                                            "works, and every admin session has ended")
