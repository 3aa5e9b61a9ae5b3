"""Reader study: design (balance, no twins, identical encoding), the web server (security,
idempotent answers, 20 concurrent readers across a server kill), analysis, Label Studio."""

from __future__ import annotations

import json
import re
import threading

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.errors import ConfigError, DataError
from dermsynth.reader_study import database as db
from dermsynth.reader_study.analysis import agreement, analyse, exact
from dermsynth.reader_study.design import StudyConfig, create_study
from dermsynth.reader_study.labelstudio import export_tasks, import_annotations
from readers_helpers import Server, items, shown_everything

CFG = StudyConfig(n_items=12, n_pairs=2, attention_checks=1, image_size=64, real_from="pool", seed=3,
                  allow_mixed_resolution=True)


@pytest.fixture()
def study(reader_store_split, tmp_path):
    store, split = reader_store_split
    create_study(store, split, tmp_path / "study", CFG)
    return tmp_path / "study"


def invite(study, *names):
    conn = db.connect(study / db.DB_NAME)
    try:
        return [db.add_reader(conn, n) for n in names]
    finally:
        conn.close()


def test_design_is_balanced_stratified_twin_free_and_seeded(study, reader_store_split, tmp_path):
    it = items(study)
    single = it[it["task"] == "single"]
    assert (single["truth"] == "real").sum() == 6 and (single["truth"] == "synthetic").sum() == 6
    assert (it["task"] == "pair").sum() == 2 and (it["task"] == "attention").sum() == 1
    # real items from the pool here: none is the reference of a synthetic single item
    assert not set(single.loc[single["truth"] == "real", "source_id"]) & set(single["ref_id"].dropna())
    pairs = it[it["task"] == "pair"]  # a pair's real reference is no single item and twins none of them
    assert not set(pairs["ref_id"]) & (set(single["source_id"]) | set(single["ref_id"].dropna()))
    assert single.loc[single["truth"] == "real", "label"].value_counts().max() == 1  # spread over classes
    store, split = reader_store_split
    create_study(store, split, tmp_path / "again", CFG)
    again = items(tmp_path / "again")
    assert sorted(again["source_id"].dropna()) == sorted(it["source_id"].dropna())  # same seed, same draw
    with pytest.raises(ConfigError, match="already holds a study"):
        create_study(store, split, study, CFG)
    with pytest.raises(ConfigError, match="even"):
        create_study(store, split, tmp_path / "odd", StudyConfig(n_items=5, allow_mixed_resolution=True))
    with pytest.raises(DataError, match="only"):
        create_study(store, split, tmp_path / "big", StudyConfig(n_items=400, allow_mixed_resolution=True))


def test_served_files_differ_only_in_pixels(study):
    """Same format, size, JPEG tables and (absent) metadata for real and synthetic items; names
    are opaque ids of one length."""
    it = items(study)
    files = {row.truth: [] for row in it.itertuples()}
    for row in it.itertuples():
        files[row.truth].append(study / "items" / f"{row.image_a}.jpg")
    signatures = set()
    for truth in ("real", "synthetic"):
        for f in files[truth]:
            assert re.fullmatch(r"[0-9a-f]{24}\.jpg", f.name)
            img = Image.open(f)
            assert not img.getexif() and "icc_profile" not in img.info and "comment" not in img.info
            signatures.add((truth, img.format, img.size, img.mode, json.dumps(img.quantization, sort_keys=True),
                            tuple(sorted(img.info))))
    by_truth = {t: {s[1:] for s in signatures if s[0] == t} for t in ("real", "synthetic")}
    assert len(by_truth["real"]) == 1 and by_truth["real"] == by_truth["synthetic"]


def test_server_security_and_idempotent_answers(study):
    token, other = invite(study, "alice", "bob")
    with Server(study) as srv:
        get = lambda path: httpx.get(srv.url + path, timeout=10)  # noqa: E731
        for path in ("/r/wrong", "/api/r/wrong/next", "/r/", "/admin/wrong", "/admin/wrong/export.csv"):
            r = get(path)
            assert r.status_code in (403, 404) and "Traceback" not in r.text, path
        assert get("/api/r/wrong/next").status_code == 403
        nxt = get(f"/api/r/{token}/next").json()
        assert set(nxt) == {"done", "item_id", "task", "images", "answered", "total"}  # no key, label or method
        image = nxt["images"][0]
        assert get(image).status_code == 200
        # another reader's token does not fetch it (it was not shown to them), an unknown token is 403
        assert get(image.replace(token, other)).status_code == 404 and get(image.replace(token, "x")).status_code == 403
        assert get(image[:-1] + ("0" if image[-1] != "0" else "1")).status_code == 404  # tampered id
        assert get(f"/img/{token}/..%2Fconfig.json").status_code == 404
        assert get(f"/img/{token}/../study.sqlite").status_code == 404
        post = lambda body, **kw: httpx.post(f"{srv.url}/api/r/{token}/answer", timeout=10, **kw)  # noqa: E731
        answer = "left" if nxt["task"] == "pair" else "real"
        assert post(None, json={"item_id": "f" * 24, "answer": "real", "confidence": 3}).status_code == 404
        assert post(None, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        assert post(None, json={"item_id": nxt["item_id"], "answer": "real", "confidence": 9}).status_code == 422
        assert post(None, json={"item_id": nxt["item_id"], "answer": "maybe", "confidence": 2}).status_code == 422
        big = post(None, content=json.dumps({"item_id": "x" * 10_000}).encode(),
                   headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and "Traceback" not in big.text
        first = post(None, json={"item_id": nxt["item_id"], "answer": answer, "confidence": 4})
        second = post(None, json={"item_id": nxt["item_id"], "answer": answer, "confidence": 1})
        assert first.json()["recorded"] and not second.json()["recorded"] and second.json()["answered"] == 1
        assert get(f"/api/r/{other}/next").json()["answered"] == 0  # bob sees nothing of alice
    conn = db.connect(study / db.DB_NAME)
    rows = conn.execute("SELECT confidence FROM answers").fetchall()
    conn.close()
    assert [r["confidence"] for r in rows] == [4]  # the first answer stands


def test_image_headers_do_not_tell_real_from_synthetic(study):
    token, = invite(study, "carol")
    shown_everything(study, token)
    it = items(study)
    with Server(study) as srv:
        heads = {}
        for row in it[it["task"] == "single"].itertuples():
            r = httpx.get(f"{srv.url}/img/{token}/{row.image_a}", timeout=10)
            heads.setdefault(row.truth, set()).add(tuple(sorted((k, v) for k, v in r.headers.items()
                                                                if k not in ("content-length", "date"))))
    assert len(heads["real"]) == 1 and heads["real"] == heads["synthetic"]


@pytest.mark.slow
def test_twenty_concurrent_readers_survive_a_server_kill(study):
    """20 readers answer every item at once on loopback, each from an address of their own (as
    readers on 20 machines: the per-address limits are not what is tested here); the server is
    killed (SIGKILL) and restarted mid-way; clients retry. No answer is lost or duplicated."""
    tokens = invite(study, *[f"reader{i:02d}" for i in range(20)])
    n_items = len(items(study))
    acked: dict[str, set] = {t: set() for t in tokens}
    errors, interrupted = [], []
    srv = Server(study).start()

    def reader(token):
        address = f"127.0.1.{tokens.index(token) + 1}"
        client = httpx.Client(base_url=srv.url, timeout=5, transport=httpx.HTTPTransport(local_address=address))
        for _ in range(400):  # bounded
            try:
                nxt = client.get(f"/api/r/{token}/next").json()
                if nxt["done"]:
                    return
                ans = "left" if nxt["task"] == "pair" else "synthetic"
                r = client.post(f"/api/r/{token}/answer", json={"item_id": nxt["item_id"], "answer": ans,
                                                                "confidence": 3})
                if r.status_code == 200:
                    acked[token].add(nxt["item_id"])
            except (httpx.TransportError, json.JSONDecodeError):
                interrupted.append(token)
                threading.Event().wait(0.2)
        errors.append(f"{token[:6]} did not finish")

    threads = [threading.Thread(target=reader, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for _ in range(600):  # kill the server a third of the way through
        if sum(map(len, acked.values())) >= 20 * n_items // 3:
            break
        threading.Event().wait(0.01)
    at_kill = sum(map(len, acked.values()))
    srv.restart()
    for t in threads:
        t.join(timeout=300)
    srv.kill()
    assert not errors and at_kill < 20 * n_items and interrupted  # killed mid-way, clients saw it
    conn = db.connect(study / db.DB_NAME)
    rows = conn.execute("SELECT r.token_hash, a.item_id FROM answers a JOIN readers r USING (reader_id)").fetchall()
    per_reader = conn.execute("SELECT reader_id, COUNT(*) AS n FROM answers GROUP BY reader_id").fetchall()
    conn.close()
    assert len(rows) == 20 * n_items and len({(r[0], r[1]) for r in rows}) == len(rows)
    assert all(r["n"] == n_items for r in per_reader)
    assert sum(len(v) for v in acked.values()) <= len(rows)


def _answer_all(study, name, choose):
    conn = db.connect(study / db.DB_NAME)
    db.add_reader(conn, name)
    reader = conn.execute("SELECT * FROM readers WHERE name = ?", (name,)).fetchone()
    for row in conn.execute("SELECT * FROM items").fetchall():
        answer, conf = choose(row)
        db.record_answer(conn, reader["reader_id"], row["item_id"], answer, conf, None)
    conn.close()


def test_analysis_of_known_answers(study, tmp_path):
    flip = {"real": "synthetic", "synthetic": "real", "left": "right", "right": "left"}
    _answer_all(study, "expert", lambda r: (r["truth"], 5))
    _answer_all(study, "twin", lambda r: (r["truth"], 4))
    _answer_all(study, "contrarian", lambda r: (flip[r["truth"]], 2))
    res = analyse(study)
    per = res["per_reader"].set_index("reader")
    assert per.loc["expert", "accuracy"] == 1.0 and per.loc["contrarian", "accuracy"] == 0.0
    assert per.loc["expert", "auc_confidence"] == 1.0 and per.loc["contrarian", "auc_confidence"] == 0.0
    assert per.loc["expert", "attention_passed"] == 1 and per.loc["contrarian", "attention_passed"] == 0
    assert res["pooled"]["n"] == 36 and res["pooled"]["accuracy"] == pytest.approx(2 / 3)
    assert res["pairs"]["n"] == 6
    assert set(res["breakdown"]["factor"]) == {"label", "skin_group"} and "p_bh" in res["breakdown"]
    assert "real" not in set(res["by_method"]["method"]) and "auc_p_bh" in res["by_method"]
    assert (study / "analysis" / "summary.json").exists()
    k = exact(12, 12)
    assert k["ci_low"] == pytest.approx(0.7354, abs=1e-3) and k["p_value"] == pytest.approx(2 * 0.5 ** 12)
    same = pd.DataFrame({"reader": ["a"] * 4 + ["b"] * 4, "item_id": list("wxyz") * 2,
                         "answer": ["real", "synthetic", "real", "synthetic"] * 2})
    assert agreement(same)["fleiss_kappa"] == pytest.approx(1.0)
    fooled = res["fooled"]
    assert np.allclose(fooled["fooled_share"], 1 / 3)  # only the contrarian called them real


def test_label_studio_round_trip(study, tmp_path):
    tasks_path = export_tasks(study, tmp_path / "ls")
    tasks = json.loads(tasks_path.read_text())
    assert len(tasks) == len(items(study))
    assert not any(k in json.dumps(tasks) for k in ('"truth"', '"synthetic"', '"method"'))
    it = items(study).set_index("item_id")
    export = [{"id": i, "data": t["data"], "annotations": [{"completed_by": {"email": "dr.x@clinic"}, "result": [
        {"from_name": "authenticity", "type": "choices",
         "value": {"choices": ["Left" if it.loc[t["data"]["item_id"], "task"] == "pair" else "Synthetic"]}},
        {"from_name": "confidence", "type": "rating", "value": {"rating": 4}}]}]} for i, t in enumerate(tasks)]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert import_annotations(study, tmp_path / "export.json") == {"added": len(tasks), "repeated": 0, "skipped": 0}
    assert import_annotations(study, tmp_path / "export.json")["repeated"] == len(tasks)
    assert analyse(study)["readers"] == 1
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(DataError, match="Label Studio export"):
        import_annotations(study, tmp_path / "bad.json")


def test_report_has_the_reader_study_section(study):
    from dermsynth.analysis.reader_study import write_study_report

    _answer_all(study, "expert", lambda r: (r["truth"], 5))
    page = write_study_report(study).read_text()
    assert "Reader study" in page and "Fleiss" in page and "Per reader" in page
    assert np.isfinite(analyse(study)["pooled"]["p_value"])
