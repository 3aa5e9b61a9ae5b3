"""The reader study's web app (FastAPI, served by :func:`dermsynth.reader_study.server.serve`): invite
links per reader, one image (or pair) at a time, answers committed as given, an admin page with
progress and CSV export.

What a reader can reach: their own next item (never its key), the images by opaque id, and
their answer endpoint — nothing of another reader, the key or the admin page. An answer counts
only for an item served to that reader, with strict types (``true`` is no confidence) and, when
asked, a diagnosis among the study's classes; a second, different answer to an item is refused
with 409 so a stale tab learns that its answer was not recorded. Every image is sent with the
same fixed headers (no ETag or Last-Modified, which would carry file times); every response,
errors included, is ``no-store``. The admin logs in with the token in a form and gets a
short-lived session cookie (see :mod:`dermsynth.reader_study.access`); a script may send the
token as an ``Authorization: Bearer`` header. The token is never in a path or a link. Errors are
short JSON bodies with 4xx codes, never a traceback.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dermsynth import files as dio
from dermsynth.reader_study import access
from dermsynth.reader_study import database as db
from dermsynth.reader_study.export import answers_csv
from dermsynth.reader_study.pages import ADMIN_LOGIN_PAGE, ADMIN_PAGE, READER_PAGE
from dermsynth.reader_study.server import MAX_BODY, NO_STORE, BodyGuard

IMAGE_ID = re.compile(r"^[0-9a-f]{24}$")
ADMIN_COOKIE = "dermsynth_admin"
MAX_SESSION_HOURS = 168


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: str = Field(max_length=64)
    answer: Literal["real", "synthetic", "left", "right"]
    confidence: int = Field(ge=1, le=5)
    diagnosis: str | None = Field(None, max_length=200)


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"duplicate key(s) {repeated}")
    return dict(pairs)


def strict_answer(raw: bytes) -> AnswerIn:
    """The answer body as strict JSON: a key given twice is refused (400), not resolved by "last wins",
    so what a client meant and what is recorded cannot differ."""
    try:
        data = json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except ValueError as exc:
        raise HTTPException(400, f"the body is not valid JSON ({exc})" if "duplicate" in str(exc)
                            else "the body is not valid JSON") from None
    try:
        return AnswerIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


def create_app(study: str | Path, admin_session_hours: float = 8.0) -> FastAPI:
    """The app for ``study``; an admin session (cookie) lasts ``admin_session_hours``."""
    study = Path(study)
    if not 0 < admin_session_hours <= MAX_SESSION_HOURS:
        raise ValueError(f"admin_session_hours={admin_session_hours}: give more than 0 and at most "
                         f"{MAX_SESSION_HOURS} (a week)")
    if not (study / db.DB_NAME).exists():
        raise FileNotFoundError(f"{study} is not a reader study (no {db.DB_NAME}); create one with "
                                "`dermsynth reader-study create`")
    config = dio.read_json(study / "config.json")
    diagnoses = set(config["classes"]) if config.get("ask_diagnosis") else set()
    setup = db.connect(study / db.DB_NAME)
    db.create_schema(setup)  # a study made by an older version gains the tables it lacks
    setup.close()
    app = FastAPI(title="dermsynth reader study", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)

    def conn():
        return db.connect(study / db.DB_NAME)

    def token_ok(token: str) -> bool:
        c = conn()
        try:
            return db.reader_for(c, token) is not None
        finally:
            c.close()

    app.add_middleware(BodyGuard, token_ok=token_ok, max_body=MAX_BODY)

    def reader_or_403(c, token: str):
        reader = db.reader_for(c, token)
        if reader is None:
            raise HTTPException(403, "unknown or missing invite token")
        return reader

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers={**NO_STORE, **(exc.headers or {})})

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, exc: RequestValidationError):
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse({"error": "the body is not valid JSON"}, 400, headers=NO_STORE)
        fields = sorted({".".join(str(p) for p in e.get("loc", [])[1:]) or "body" for e in exc.errors()})
        return JSONResponse({"error": "malformed request: check these fields", "fields": fields}, 422,
                            headers=NO_STORE)

    @app.exception_handler(Exception)
    async def internal(_request, _exc):
        return JSONResponse({"error": "internal error"}, 500, headers=NO_STORE)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse("<p>dermsynth reader study: open the invite link you were sent.</p>", headers=NO_STORE)

    @app.get("/r/{token}", response_class=HTMLResponse)
    def reader_page(token: str):
        c = conn()
        try:
            reader_or_403(c, token)
        finally:
            c.close()
        classes = json.dumps(sorted(diagnoses)).replace("<", "\\u003c")
        return HTMLResponse(READER_PAGE.replace("__CLASSES__", classes), headers=NO_STORE)

    @app.get("/api/r/{token}/next")
    def next_item(token: str):
        c = conn()
        try:
            reader = reader_or_403(c, token)
            item, done, total = db.next_item(c, reader)
        finally:
            c.close()
        if item is None:
            return JSONResponse({"done": True, "answered": done, "total": total}, headers=NO_STORE)
        images = [f"/img/{token}/{item['image_a']}"] + ([f"/img/{token}/{item['image_b']}"] if item["image_b"] else [])
        task = "pair" if item["task"] == "pair" else "single"  # an attention check looks like any item
        return JSONResponse({"done": False, "item_id": item["item_id"], "task": task, "images": images,
                             "answered": done, "total": total}, headers=NO_STORE)

    @app.get("/r/{token}/")
    def reader_page_slash(token: str):
        """An invite link pasted with a trailing slash: a path-only redirect, never one built from
        the Host header (which a client sets and a proxy may not forward)."""
        return RedirectResponse(f"/r/{token}", 307, headers=NO_STORE)

    @app.post("/api/r/{token}/answer")
    async def answer(token: str, request: Request):
        body = strict_answer(await request.body())
        c = conn()
        try:
            reader = reader_or_403(c, token)
            item = db.item(c, body.item_id)
            if item is None or not db.was_served(c, reader["reader_id"], body.item_id):
                raise HTTPException(404, "no such item among those shown to you")
            if body.answer not in db.ANSWERS[item["task"]]:
                raise HTTPException(422, f"answer must be one of {list(db.ANSWERS[item['task']])} for this item")
            if body.diagnosis is not None and body.diagnosis not in diagnoses:
                raise HTTPException(422, "diagnosis must be one of the study's classes" if diagnoses
                                    else "this study does not ask for a diagnosis")
            new = db.record_answer(c, reader["reader_id"], body.item_id, body.answer, body.confidence, body.diagnosis)
            first = None if new else db.answer_of(c, reader["reader_id"], body.item_id)
            done, total = db.counts(c, reader["reader_id"])
        finally:
            c.close()
        if first is not None and tuple(first) != (body.answer, body.confidence, body.diagnosis):
            return JSONResponse({"error": "not recorded: you had answered this image already (in another tab?); "
                                          "your first answer stands", "recorded": False, "answered": done,
                                 "total": total}, 409, headers=NO_STORE)
        return JSONResponse({"ok": True, "recorded": new, "answered": done, "total": total}, headers=NO_STORE)

    @app.get("/img/{token}/{image_id}")
    def image(token: str, image_id: str):
        if not IMAGE_ID.match(image_id):
            raise HTTPException(404, "no such image")
        c = conn()
        try:
            reader = reader_or_403(c, token)
            if not db.image_served_to(c, reader["reader_id"], image_id):
                raise HTTPException(404, "no such image among those shown to you")
        finally:
            c.close()
        return Response((study / "items" / f"{image_id}.jpg").read_bytes(), media_type="image/jpeg",
                        headers=NO_STORE)

    def admin_or_403(request: Request):
        """A connection for an admin request: a live session cookie, or the token as a Bearer header."""
        c = conn()
        auth, session = request.headers.get("authorization", ""), request.cookies.get(ADMIN_COOKIE)
        if auth.lower().startswith("bearer "):
            ok = access.is_admin(c, auth[7:].strip())
        else:
            ok = bool(session) and access.session_ok(c, session)
        if not ok:
            c.close()
            raise HTTPException(403, "not logged in as the admin (or the session expired): log in at /admin")
        return c

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request):
        try:
            c = admin_or_403(request)
        except HTTPException:
            return HTMLResponse(ADMIN_LOGIN_PAGE, headers=NO_STORE)
        try:
            rows = db.progress(c)
        finally:
            c.close()
        body = "".join(f"<tr><td>{html.escape(str(r['name']))}</td><td>{r['done']} / {r['total']}</td>"
                       f"<td>{r['last'] or ''}</td><td>{'revoked ' + r['revoked'] if r['revoked'] else ''}</td></tr>"
                       for r in rows)
        return HTMLResponse(ADMIN_PAGE.replace("__ROWS__", body), headers=NO_STORE)

    @app.post("/admin/login")
    async def admin_login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        c = conn()
        try:
            if not token or not access.is_admin(c, token):
                raise HTTPException(403, "wrong admin token")
            session = access.start_session(c, admin_session_hours)
        finally:
            c.close()
        https = request.url.scheme == "https"  # X-Forwarded-Proto counts only from a --trusted-proxy (uvicorn)
        resp = RedirectResponse("/admin", 303, headers=NO_STORE)
        resp.set_cookie(ADMIN_COOKIE, session, max_age=int(admin_session_hours * 3600), httponly=True,
                        samesite="strict", path="/admin", secure=https)
        return resp

    @app.post("/admin/logout")
    def admin_logout(request: Request):
        session = request.cookies.get(ADMIN_COOKIE)
        if session:
            c = conn()
            try:
                access.end_session(c, session)
            finally:
                c.close()
        resp = RedirectResponse("/admin", 303, headers=NO_STORE)
        resp.delete_cookie(ADMIN_COOKIE, path="/admin", httponly=True, samesite="strict")
        return resp

    @app.get("/admin/export.csv")
    def export_csv(request: Request):
        c = admin_or_403(request)
        try:
            rows = db.answers_with_key(c)
        finally:
            c.close()
        return Response(answers_csv(rows), media_type="text/csv",
                        headers={**NO_STORE, "Content-Disposition": "attachment; filename=answers.csv"})

    return app
