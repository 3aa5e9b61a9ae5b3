"""The reader-study server under abuse (issue 22, items 8–12), served as `serve` serves it, in a
subprocess on loopback, spoken to over raw sockets where a client library would be too polite."""

from __future__ import annotations

import csv
import io
import json
import socket
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from dermsynth.reader_study import database as db
from dermsynth.reader_study.design import StudyConfig, create_study
from dermsynth.reader_study.export import answers_csv, frame_csv
from readers_helpers import Server, invite

README = Path(__file__).resolve().parents[1] / "docs" / "guide" / "10-reader-study.md"  # the guide page on it


@pytest.fixture(scope="module")
def served(reader_store_split, tmp_path_factory):
    store, split = reader_store_split
    study = tmp_path_factory.mktemp("srv") / "study"
    res = create_study(store, split, study, StudyConfig(n_items=6, n_pairs=1, image_size=64, seed=4, ask_diagnosis=True,
                                                        allow_mixed_resolution=True))
    with Server(study, header_timeout=1.0, body_timeout=1.0, max_connections=8) as srv:
        yield srv, study, res


def raw(srv: Server, data: bytes, wait: float = 15.0) -> bytes:
    """Send ``data`` and read until the server closes (or ``wait`` s pass: then b'<open>')."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            return out + b"<open>"
        except ConnectionResetError:
            pass
        return out


def test_body_limit_counts_chunked_bodies_and_token_comes_first(served):
    """Item 8: a wrong token is 403 whatever the body; a body over the limit is 413 however it is
    framed (a lying Content-Length with chunked encoding included)."""
    srv, study, _ = served
    token = invite(study, "chunky")
    junk = b"{not json"
    wrong = raw(srv, b"POST /api/r/WRONG/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(junk), junk))
    assert wrong.startswith(b"HTTP/1.1 403")
    body = b"%x\r\n%s\r\n" % (5000, b"x" * 5000)  # one chunk past the limit, and more to come
    r = raw(srv, b"POST /api/r/%s/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n%s" % (token.encode(), body))
    assert r.startswith(b"HTTP/1.1 413"), r[:80]
    r = raw(srv, b"POST /api/r/%s/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (token.encode(), body))
    assert r.startswith((b"HTTP/1.1 413", b"HTTP/1.1 400")), r[:80]  # refused either way, never read whole
    r = httpx.post(f"{srv.url}/api/r/WRONG/answer", content=b"x" * 20_000, timeout=10)
    assert r.status_code == 403
    r = httpx.post(f"{srv.url}/api/r/{token}/answer", content=(b"x" * 20_000 for _ in range(1)), timeout=10)
    assert r.status_code == 413


def test_slow_clients_are_cut_off_and_the_readme_serves_on_loopback(served):
    """Item 9: half-sent headers and a body dribbled byte by byte are answered 408 and closed
    (timeouts 1 s here); connections beyond the limit get 503; the README serves on loopback and
    writes out the HTTPS proxy."""
    srv, study, _ = served
    token = invite(study, "slow")
    half = raw(srv, b"GET /api/r/%s/next HTTP/1.1\r\nHost: x\r\nX-Slow: " % token.encode())
    assert half.startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(b"POST /api/r/%s/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50\r\n\r\n{" % token.encode())
        got, sent = b"", 0
        try:
            while sent < 49:  # one byte every 0.3 s: 15 s in all, unless the server closes first
                time.sleep(0.3)
                s.sendall(b" ")
                sent += 1
        except OSError:
            pass
        try:
            while chunk := s.recv(4096):
                got += chunk
        except OSError:
            pass
    assert got.startswith(b"HTTP/1.1 408") and sent < 49
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=15) for _ in range(8)]  # the limit here
    for s in held:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    try:
        assert httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).status_code == 503  # over the limit
    finally:
        for s in held:
            s.close()
    text = README.read_text()
    section = text  # the whole guide page is the reader study
    assert "0.0.0.0" not in section and "proxy_pass http://127.0.0.1:8000" in section


def _serve_one(srv, token):
    nxt = httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).json()
    return nxt, ("left" if nxt["task"] == "pair" else "real")


def test_diagnoses_must_be_classes_and_exports_neutralise_formulas(served):
    """Item 10: a diagnosis that is no class name is refused; exported cells that start with
    = + - @ stay text."""
    srv, study, res = served
    token = invite(study, "=cmd|' /C calc'!A0")
    nxt, ans = _serve_one(srv, token)
    post = lambda **kw: httpx.post(f"{srv.url}/api/r/{token}/answer", timeout=10,  # noqa: E731
                                   json={"item_id": nxt["item_id"], "answer": ans, "confidence": 3, **kw})
    assert post(diagnosis='=HYPERLINK("http://evil","click")').status_code == 422
    assert post(diagnosis=res["classes"][0]).status_code == 200
    rows = list(csv.DictReader(io.StringIO(answers_csv([{"reader": "=1+1", "diagnosis": "@SUM(A1)", "label": "-2",
                                                         "method": "+x", "answer": "real"}]))))
    assert rows[0]["reader"] == "'=1+1" and rows[0]["diagnosis"] == "'@SUM(A1)" and rows[0]["label"] == "'-2"
    assert rows[0]["method"] == "'+x" and rows[0]["answer"] == "real"
    analysis_csv = frame_csv(pd.DataFrame({"reader": ["=1+1", "ann"], "accuracy": [-0.5, 1.0]}))
    assert analysis_csv.splitlines()[1:] == ["'=1+1,-0.5", "ann,1.0"]  # text neutralised, numbers kept


def test_answers_only_for_served_items_with_strict_types(served):
    """Item 11: an item never served to this reader, or a boolean confidence, is refused; a
    different second answer (a stale tab) is 409, not silently dropped."""
    srv, study, _ = served
    alice, bob = invite(study, "alice"), invite(study, "bob")
    nxt, ans = _serve_one(srv, alice)
    conn = db.connect(study / db.DB_NAME)
    unserved = next(r["item_id"] for r in conn.execute("SELECT item_id FROM items") if r["item_id"] != nxt["item_id"])
    conn.close()
    post = lambda tok, body: httpx.post(f"{srv.url}/api/r/{tok}/answer", json=body, timeout=10)  # noqa: E731
    assert post(alice, {"item_id": unserved, "answer": "real", "confidence": 3}).status_code == 404
    assert post(bob, {"item_id": nxt["item_id"], "answer": ans, "confidence": 3}).status_code == 404  # not bob's
    bad = post(alice, {"item_id": nxt["item_id"], "answer": ans, "confidence": True})
    assert bad.status_code == 422 and bad.json()["fields"] == ["confidence"]
    assert post(alice, {"item_id": nxt["item_id"], "answer": ans, "confidence": "3"}).status_code == 422
    assert post(alice, {"item_id": nxt["item_id"], "answer": ans, "confidence": 3}).json()["recorded"]
    again = post(alice, {"item_id": nxt["item_id"], "answer": ans, "confidence": 3})
    assert again.status_code == 200 and not again.json()["recorded"]  # a retried identical answer: idempotent
    stale = post(alice, {"item_id": nxt["item_id"], "answer": "synthetic" if ans == "real" else "right",
                         "confidence": 5})
    assert stale.status_code == 409 and "not recorded" in stale.json()["error"]


def test_errors_are_no_store_and_the_admin_token_is_never_in_a_url_or_a_cookie(served):
    """Item 12: 404 and 405 carry the no-store headers. Issue 39, item 4: the admin logs in with the
    token in a form and gets a session cookie that is not the token and expires; /admin/TOKEN is no
    page; logout ends the session; a script may send the token as a Bearer header."""
    srv, study, res = served
    for r in (httpx.get(f"{srv.url}/nowhere", timeout=10), httpx.delete(f"{srv.url}/", timeout=10)):
        assert r.status_code in (404, 405) and r.headers["cache-control"] == "no-store, private"
    admin = res["admin_token"]
    assert httpx.get(f"{srv.url}/admin/export.csv", timeout=10).status_code == 403
    r = httpx.get(f"{srv.url}/admin/export.csv", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert r.status_code == 200 and r.text.startswith("reader,item_id")
    assert httpx.get(f"{srv.url}/admin/{admin}", timeout=10).status_code == 404
    assert httpx.get(f"{srv.url}/admin/{admin}/export.csv", timeout=10).status_code == 404
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        assert 'name="token"' in client.get("/admin").text  # the login form
        assert client.post("/admin/login", data={"token": "wrong"}).status_code == 403
        login = client.post("/admin/login", data={"token": admin})
        cookie = login.headers["set-cookie"]
        assert login.status_code == 303 and admin not in cookie and "max-age=28800" in cookie.lower()
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        page = client.get("/admin")
        assert "progress" in page.text and admin not in page.text and admin not in str(page.url)
        assert client.get("/admin/export.csv").status_code == 200
        assert client.post("/admin/logout").status_code == 303
        assert client.get("/admin/export.csv").status_code == 403 and 'name="token"' in client.get("/admin").text
        client.cookies.set("dermsynth_admin", admin, path="/admin")  # the raw token as a cookie opens nothing
        assert client.get("/admin/export.csv").status_code == 403
    assert json.loads(json.dumps(res["classes"]))  # the study asks for diagnoses among these


def test_sessions_expire_and_a_rotation_ends_them_and_the_old_token(served, tmp_path):
    """Issue 39, item 4: `reader-study admin rotate` makes a new token; the old token and every
    session minted from it stop working at once, on the running server."""
    from typer.testing import CliRunner

    from dermsynth.cli import app
    from dermsynth.reader_study import access

    srv, study, res = served
    conn = db.connect(study / db.DB_NAME)
    assert not access.session_ok(conn, access.start_session(conn, hours=-0.01))  # an expired session
    conn.close()
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        assert client.post("/admin/login", data={"token": res["admin_token"]}).status_code == 303
        assert client.get("/admin/export.csv").status_code == 200
        out = CliRunner().invoke(app, ["reader-study", "admin", "rotate", str(study), "--json"])
        assert out.exit_code == 0, out.output
        new = json.loads(out.stdout)["admin_token"]
        assert client.get("/admin/export.csv").status_code == 403  # the session ended
        assert client.post("/admin/login", data={"token": res["admin_token"]}).status_code == 403
        assert client.post("/admin/login", data={"token": new}).status_code == 303
        assert client.get("/admin/export.csv").status_code == 200
    res["admin_token"] = new  # for the tests after this one


def test_an_invitation_can_be_revoked_and_renewed_with_the_answers_kept(served):
    """Issue 39, item 4: `invite revoke` stops a link; `invite renew` gives a new one that goes on
    where the reader was; the last release's `invite STUDY --name` still adds readers."""
    from typer.testing import CliRunner

    from dermsynth.cli import app

    srv, study, _ = served
    cli = lambda *args: CliRunner().invoke(app, ["reader-study", *map(str, args)])  # noqa: E731
    added = cli("invite", study, "--name", "hana", "--json")
    assert added.exit_code == 0 and "invite add" in added.output  # the former spelling, with its line
    token = json.loads(added.stdout)["links"]["hana"].rsplit("/", 1)[1]
    nxt, ans = _serve_one(srv, token)
    assert httpx.post(f"{srv.url}/api/r/{token}/answer", json={"item_id": nxt["item_id"], "answer": ans,
                                                               "confidence": 3}, timeout=10).status_code == 200
    assert cli("invite", "revoke", study, "--name", "hana").exit_code == 0
    assert httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).status_code == 403
    assert httpx.get(f"{srv.url}/r/{token}", timeout=10).status_code == 403
    nobody = cli("invite", "revoke", study, "--name", "nobody")
    assert nobody.exit_code == 2 and "no reader named 'nobody'" in nobody.output and "hana" in nobody.output
    renewed = cli("invite", "renew", study, "--name", "hana", "--json")
    new = json.loads(renewed.stdout)["links"]["hana"].rsplit("/", 1)[1]
    assert httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).status_code == 403
    assert httpx.get(f"{srv.url}/api/r/{new}/next", timeout=10).json()["answered"] == 1


def idle(port: int, source: str) -> socket.socket:
    """A connection from ``source`` (any 127.x address is this machine) that sends nothing."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def first_line(sock: socket.socket) -> bytes:
    """The status line the server sent on ``sock``, or b'<open>' if it sent nothing in 1 s."""
    sock.settimeout(1.0)
    try:
        return sock.recv(4096).split(b"\r\n", 1)[0]
    except TimeoutError:
        return b"<open>"


def test_one_client_cannot_lock_out_another(reader_store_split, tmp_path):
    """Issue 39, item 1: the cap on connections is per client address as well as in all, so a
    client holding its maximum of idle connections does not stop a second client; the cap in all
    admits exactly its number; and one address's burst of requests is cut off (429) alone."""
    store, split = reader_store_split
    study = tmp_path / "study"
    create_study(store, split, study, StudyConfig(n_items=4, n_pairs=0, image_size=64, seed=5,
                                                  allow_mixed_resolution=True))
    with Server(study, header_timeout=8.0, max_connections=6, max_connections_per_client=3, requests_per_second=1.0,
                request_burst=5) as srv:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.5"), timeout=10) as flood:
            codes = [flood.get(f"{srv.url}/").status_code for _ in range(20)]
        assert codes[:5] == [200] * 5 and codes.count(429) >= 10, codes
        assert httpx.get(f"{srv.url}/", timeout=10).status_code == 200  # another address is not limited
        time.sleep(1.0)  # the flood's connection closes
        held = [idle(srv.port, "127.0.0.2") for _ in range(3)]
        extra = idle(srv.port, "127.0.0.2")
        assert first_line(extra).startswith(b"HTTP/1.1 429")
        assert httpx.get(f"{srv.url}/", timeout=10).status_code == 200  # a second client gets in
        held += [idle(srv.port, "127.0.0.3") for _ in range(3)]  # 6 connections: the cap in all, reached
        assert first_line(held[-1]) == b"<open>"  # the 6th of 6 is admitted
        assert first_line(idle(srv.port, "127.0.0.4")).startswith(b"HTTP/1.1 503")  # the 7th is not
        for sock in held[3:] + [extra]:
            sock.close()
        time.sleep(0.5)
        # a burst of connections the server refuses (429) does not count against the cap in all
        flood = [connect_without_waiting(srv.port, "127.0.0.2") for _ in range(20)]
        newcomer = idle(srv.port, "127.0.0.3")
        flood += [connect_without_waiting(srv.port, "127.0.0.2") for _ in range(20)]
        assert first_line(newcomer) == b"<open>"
        for sock in held[:3] + flood + [newcomer]:
            sock.close()


def connect_without_waiting(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock


def test_a_client_that_stops_reading_is_dropped(served):
    """Issue 39, an outside attack: a client that pipelines requests and never reads the answers
    held its connection for ever (every deadline had passed); now it has body_timeout seconds to
    drain the send buffer."""
    srv, study, _ = served
    token = invite(study, "ivan")
    page = f"GET /r/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(page * 150)  # about 1 MB of answers asked for, none read
    time.sleep(4.0)  # the fixture's body_timeout is 1 s
    sock.settimeout(3.0)
    got, ended = 0, False
    try:
        while chunk := sock.recv(65536):
            got += len(chunk)
        ended = True  # closed by the server
    except ConnectionResetError:
        ended = True  # aborted by the server
    except TimeoutError:
        pass
    sock.close()
    assert ended and got < 150 * 7000, got


def test_limits_are_checked_before_the_server_starts(served):
    """Issue 39, an outside attack: a zero rate divided by zero on every request, an infinite
    session broke every login, "*" as a proxy let any client choose its address, and a proxy
    named as a network was trusted but not exempt from the per-address cap."""
    from typer.testing import CliRunner

    from dermsynth.cli import app
    from dermsynth.reader_study.app import create_app
    from dermsynth.reader_study.server import RateLimit, is_shared, proxy_networks

    _, study, _ = served
    with pytest.raises(ValueError, match="admits nothing"):
        RateLimit(None, per_second=0)
    for hours in (float("inf"), -1, 0):
        with pytest.raises(ValueError, match="admin_session_hours"):
            create_app(study, admin_session_hours=hours)
    assert is_shared("127.0.0.5", proxy_networks(("127.0.0.0/8",))) and not is_shared("10.0.0.1", proxy_networks(
        ("127.0.0.1",)))
    cli = lambda *a: CliRunner().invoke(app, ["reader-study", "serve", str(study), *a])  # noqa: E731
    for args, says in ((["--trusted-proxy", "*"], "never every client"), (["--requests-per-second", "0"], "0.1"),
                       (["--admin-session-hours", "inf"], "168")):
        res = cli(*args)
        assert res.exit_code == 2 and says in res.output, (args, res.output)


def test_pages_cannot_be_framed_redirects_ignore_host_and_json_is_strict(served):
    """Issue 39, items 3, 5, 6: CSP with frame-ancestors 'none' on every page; a trailing-slash invite
    link redirects by path, whatever Host says; a key given twice is refused, not "last wins"."""
    srv, study, _ = served
    token = invite(study, "frida")
    for path in ("/", f"/r/{token}", "/admin", "/nowhere"):
        r = httpx.get(f"{srv.url}{path}", timeout=10)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY", path
    r = httpx.get(f"{srv.url}/r/{token}/", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 307 and r.headers["location"] == f"/r/{token}"
    item = httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).json()
    body = (f'{{"item_id": "{item["item_id"]}", "answer": "real", "confidence": 5, "confidence": 1}}').encode()
    r = httpx.post(f"{srv.url}/api/r/{token}/answer", content=body, headers={"Content-Type": "application/json"},
                   timeout=10)
    assert r.status_code == 400 and "duplicate" in r.json()["error"]
    assert httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).json()["answered"] == 0  # nothing recorded


def test_a_token_fetches_only_images_it_was_shown(served):
    """Issue 39, item 6: any valid token used to fetch any image id; now only those of items served to it."""
    srv, study, _ = served
    token = invite(study, "gita")
    shown = httpx.get(f"{srv.url}/api/r/{token}/next", timeout=10).json()
    conn = db.connect(study / db.DB_NAME)
    others = [r["image_a"] for r in conn.execute("SELECT image_a FROM items WHERE item_id != ?", (shown["item_id"],))]
    conn.close()
    assert httpx.get(f"{srv.url}{shown['images'][0]}", timeout=10).status_code == 200
    assert httpx.get(f"{srv.url}/img/{token}/{others[0]}", timeout=10).status_code == 404


def test_a_remote_bind_must_be_confirmed_and_forwarded_https_is_not_believed_from_anyone(served, tmp_path):
    """Issue 39, item 2: `serve --host 0.0.0.0` refuses without --allow-remote; a client that sends
    X-Forwarded-Proto: https (not a --trusted-proxy) does not get a Secure cookie over plain HTTP."""
    from typer.testing import CliRunner

    from dermsynth.cli import app

    srv, study, res = served
    refused = CliRunner().invoke(app, ["reader-study", "serve", str(study), "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "--allow-remote" in refused.output and "plain HTTP" in refused.output
    login = httpx.post(f"{srv.url}/admin/login", data={"token": res["admin_token"]},
                       headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert login.status_code == 303 and "secure" not in login.headers["set-cookie"].lower()
