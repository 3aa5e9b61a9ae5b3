"""The reader study's web app (FastAPI, served by uvicorn): invite links per reader, one image
(or pair) at a time, answers committed as given, an admin page with progress and CSV export.

What a reader can reach: their own next item (never its key), the images by opaque id, and
their answer endpoint — nothing of another reader, the key or the admin page. Every image is
sent with the same fixed headers (no ETag or Last-Modified, which would carry file times).
Errors are short JSON bodies with 4xx codes, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dermsynth import io as dio
from dermsynth.readers import database as db
from dermsynth.readers.pages import ADMIN_PAGE, READER_PAGE

MAX_BODY = 4096
IMAGE_ID = re.compile(r"^[0-9a-f]{24}$")
NO_STORE = {"Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(max_length=64)
    answer: Literal["real", "synthetic", "left", "right"]
    confidence: int = Field(ge=1, le=5)
    diagnosis: str | None = Field(None, max_length=200)


def create_app(study: str | Path) -> FastAPI:
    study = Path(study)
    if not (study / db.DB_NAME).exists():
        raise FileNotFoundError(f"{study} is not a reader study (no {db.DB_NAME}); create one with "
                                "`dermsynth reader-study create`")
    config = dio.read_json(study / "config.json")
    app = FastAPI(title="dermsynth reader study", docs_url=None, redoc_url=None, openapi_url=None)

    def conn():
        return db.connect(study / db.DB_NAME)

    def reader_or_403(c, token: str):
        reader = db.reader_for(c, token)
        if reader is None:
            raise HTTPException(403, "unknown or missing invite token")
        return reader

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method == "POST":
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return JSONResponse({"error": "a POST needs a Content-Length"}, 411, headers=NO_STORE)
            if int(size) > MAX_BODY:
                return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, 413, headers=NO_STORE)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=NO_STORE)

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
        classes = json.dumps(config["classes"] if config.get("ask_diagnosis") else []).replace("<", "\\u003c")
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

    @app.post("/api/r/{token}/answer")
    def answer(token: str, body: AnswerIn):
        c = conn()
        try:
            reader = reader_or_403(c, token)
            item = db.item(c, body.item_id)
            if item is None:
                raise HTTPException(404, "no such item")
            if body.answer not in db.ANSWERS[item["task"]]:
                raise HTTPException(422, f"answer must be one of {list(db.ANSWERS[item['task']])} for this item")
            new = db.record_answer(c, reader["reader_id"], body.item_id, body.answer, body.confidence, body.diagnosis)
            done, total = db.counts(c, reader["reader_id"])
        finally:
            c.close()
        return JSONResponse({"ok": True, "recorded": new, "answered": done, "total": total}, headers=NO_STORE)

    @app.get("/img/{token}/{image_id}")
    def image(token: str, image_id: str):
        if not IMAGE_ID.match(image_id):
            raise HTTPException(404, "no such image")
        c = conn()
        try:
            reader_or_403(c, token)
            if not db.image_exists(c, image_id):
                raise HTTPException(404, "no such image")
        finally:
            c.close()
        return Response((study / "items" / f"{image_id}.jpg").read_bytes(), media_type="image/jpeg",
                        headers=NO_STORE)

    def admin_or_403(token: str):
        c = conn()
        if not db.is_admin(c, token):
            c.close()
            raise HTTPException(403, "unknown or missing admin token")
        return c

    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin(token: str):
        c = admin_or_403(token)  # the token is url-safe base64, checked against the stored hash
        try:
            rows = db.progress(c)
        finally:
            c.close()
        body = "".join(f"<tr><td>{_esc(r['name'])}</td><td>{r['done']} / {r['total']}</td><td>{r['last'] or ''}</td>"
                       "</tr>" for r in rows)
        return HTMLResponse(ADMIN_PAGE.replace("__ROWS__", body).replace("__TOKEN__", token), headers=NO_STORE)

    @app.get("/admin/{token}/export.csv")
    def export(token: str):
        c = admin_or_403(token)
        try:
            rows = db.answers_with_key(c)
        finally:
            c.close()
        return Response(answers_csv(rows), media_type="text/csv",
                        headers={**NO_STORE, "Content-Disposition": "attachment; filename=answers.csv"})

    return app


def answers_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["reader", "item_id", "task", "truth", "answer", "confidence", "diagnosis", "label", "method",
              "skin_group", "source_id", "ref_id", "image_a", "image_b", "answered_at"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))
