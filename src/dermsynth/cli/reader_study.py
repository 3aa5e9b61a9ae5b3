"""``dermsynth reader-study``: create a clinicians' real-vs-synthetic study, invite readers,
serve it, analyse it, and exchange it with Label Studio."""

from __future__ import annotations

from pathlib import Path

import typer

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError, DataError
from dermsynth.reader_study.database import existing_study

app = typer.Typer(no_args_is_help=True)

ReaderStudyArg = typer.Argument(..., metavar="READER_STUDY", help="The reader-study folder `reader-study create` "
                                                                  "wrote.")


def experiment_inputs(experiment: Path, store: Path | None):
    """The split spec and synthetic store an experiment's runs used (so a study made from
    ``runs/quickstart`` uses the quickstart's own split, whatever the defaults are)."""
    from dermsynth.experiments.results import load_records
    from dermsynth.experiments.study_path import locate_store
    from dermsynth.train.spec import RunSpec

    specs = [RunSpec(**r["spec"]) for r in load_records(experiment)]
    if not specs:
        raise ConfigError(f"{experiment} holds no finished runs (runs/*.json); run the experiment first, or give "
                          "--store and the data set options instead of --study")
    stores = sorted({str(locate_store(s.synthetic_store, experiment)) for s in specs if s.synthetic_store})
    if store is None:
        if len(stores) != 1:
            raise ConfigError(f"{experiment} used {len(stores)} synthetic stores ({', '.join(stores) or 'none'}); "
                              "choose one with --store")
        store = Path(stores[0])
    splits = {s.split_spec() for s in specs}
    if len(splits) != 1:
        raise ConfigError(f"{experiment} used {len(splits)} different splits; give --store and the data set options "
                          "instead of --study")
    return store, splits.pop()


@app.command("create")
@c.handles_errors
def create(out: Path = typer.Option(..., help="The study folder to create."),
           study: Path | None = typer.Option(None, "--study", metavar="DIR", help="A study folder (e.g. "
                                             "runs/quickstart): its split and synthetic store are used."),
           store: Path | None = typer.Option(None, help="The synthetic store the synthetic items come from "
                                             "(default with --study: the study's store)."),
           dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
           n_test: int = c.NTestOpt, n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt,
           items: int = typer.Option(40, help="Single-image items (half real, half synthetic)."),
           pairs: int = typer.Option(0, help="Pair items: a synthetic image beside its real reference."),
           real_from: str = typer.Option("test", help="test (held-out images) or pool (training pool)."),
           attention_checks: int = typer.Option(0, help="Attention-check items."),
           image_size: int = typer.Option(256, help="Every item is served at this size (px)."),
           jpeg_quality: int = typer.Option(90, help="…and this JPEG quality."),
           allow_mixed_resolution: bool = typer.Option(
               False, help="Sources of different resolutions: bring every item to the smallest first (warned) "
                           "instead of refusing."),
           methods: str | None = typer.Option(None, help="Only these generation methods (comma-separated; "
                                              "default: every method in the store)."),
           ask_diagnosis: bool = typer.Option(False, help="Also ask for the diagnosis (optional for readers)."),
           seed: int = typer.Option(0, help="Seed of the item draw and their order."),
           experiment: Path | None = typer.Option(None, "--experiment", hidden=True,
                                                  help="Deprecated spelling of --study."),
           as_json: bool = c.JsonOpt):
    """Draw matched, stratified items, re-encode them identically, write the study folder."""
    from dermsynth.data.splits import load_split
    from dermsynth.reader_study.design import StudyConfig, create_study

    experiment = c.renamed(study, experiment, "--experiment", "--study")
    if experiment is not None:
        store, spec = experiment_inputs(experiment, store)
    elif store is None:
        raise ConfigError("give --store (a synthetic store) or --study (a study folder)")
    else:
        spec = c.split_spec(dataset, root, classes, n_test, n_val, split_seed)
    split = load_split(spec)
    cfg = StudyConfig(n_items=items, n_pairs=pairs, real_from=real_from, attention_checks=attention_checks,
                      image_size=image_size, jpeg_quality=jpeg_quality, seed=seed, ask_diagnosis=ask_diagnosis,
                      allow_mixed_resolution=allow_mixed_resolution,
                      methods=tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else None)
    res = create_study(store, split, out, cfg)
    c.emit(res, as_json, f"{res['items']} items ({res['n_real']} real, {res['n_synthetic']} synthetic, "
                         f"{res['n_pair']} pairs; native {res['native_size']} px, served at {image_size} px; "
                         f"ROC AUC real vs "
                         f"synthetic of file length {res['tells']['content_length_auc']}, of sharpness "
                         f"{res['tells']['sharpness_auc']}) in "
                         f"{out}\nadmin token: {res['admin_token']} (keep it; shown once) — open /admin and enter "
                         "it\nnext: `dermsynth reader-study invite add` for each reader, then `serve`")


@app.command("serve")
@c.handles_errors
def serve(study: Path = ReaderStudyArg,
          host: str = typer.Option("127.0.0.1", help="Loopback by default: put an HTTPS reverse proxy in front "
                                   "(docs/guide/10-reader-study.md)."),
          port: int = typer.Option(8000, help="TCP port to listen on."),
          header_timeout: float = typer.Option(10.0, help="Seconds for a request's headers."),
          body_timeout: float = typer.Option(10.0, help="Seconds for a request's body."),
          max_connections: int = typer.Option(64, help="Connections at once in all (503 beyond)."),
          max_connections_per_client: int = typer.Option(16, help="Connections at once from one address (429 "
                                                         "beyond), so that one client cannot keep others out. "
                                                         "Readers behind one hospital NAT share an address: raise "
                                                         "it for many at once. A --trusted-proxy is exempt."),
          requests_per_second: float = typer.Option(50.0, min=0.1, help="Requests per second from one address "
                                                    "on average, in bursts of up to 4 s' worth (429 beyond)."),
          admin_session_hours: float = typer.Option(8.0, min=0.01, max=168, help="How long an admin login lasts "
                                                    "(the session cookie's lifetime; at most a week)."),
          allow_remote: bool = typer.Option(False, help="Confirm a bind beyond loopback: the server speaks plain "
                                            "HTTP, so invite and admin tokens cross the network in clear unless "
                                            "an HTTPS proxy is in front."),
          trusted_proxy: list[str] = typer.Option([], help="Address of a reverse proxy whose X-Forwarded-Proto/-For "
                                                  "headers are believed (repeatable; an address or a network, e.g. "
                                                  "127.0.0.1 for a local nginx). From anyone else they are "
                                                  "ignored.")):
    """Serve the study (uvicorn, hardened). Put it behind HTTPS (a reverse proxy) before sending links out."""
    from dermsynth.reader_study.server import proxy_networks
    from dermsynth.reader_study.serving import LOOPBACK
    from dermsynth.reader_study.serving import serve as run

    existing_study(study)
    try:
        proxy_networks(tuple(trusted_proxy))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if host not in LOOPBACK:
        if not allow_remote:
            raise ConfigError(f"--host {host} serves beyond this machine in plain HTTP: invite links and the admin "
                              "token would cross the network in clear. Serve on 127.0.0.1 behind an HTTPS reverse "
                              "proxy (docs/guide/10-reader-study.md), or pass --allow-remote to confirm")
        c.err_console.print(f"warning: serving on {host} in plain HTTP; tokens travel in clear unless an HTTPS "
                            "proxy is in front", markup=False, style="yellow", highlight=False)
    c.say(f"serving {study} at http://{host}:{port}/ (Ctrl-C stops it): readers open their invite links "
          "(`dermsynth reader-study invite add`); the admin page is /admin: log in with the token `create` printed")
    run(study, host, port, header_timeout=header_timeout, body_timeout=body_timeout, max_connections=max_connections,
        max_connections_per_client=max_connections_per_client, requests_per_second=requests_per_second,
        request_burst=max(1, round(4 * requests_per_second)), admin_session_hours=admin_session_hours,
        trusted_proxies=tuple(trusted_proxy))


@app.command("report")
@c.handles_errors
def report(study: Path = ReaderStudyArg, as_json: bool = c.JsonOpt):
    """Analyse the answers: accuracy and AUC with reader and item effects, signal detection per method,
    Fleiss' kappa, breakdowns."""
    from dermsynth.analysis.reader_study import write_study_report
    from dermsynth.reader_study.analysis import analyse

    res = analyse(existing_study(study))
    path = write_study_report(study, res=res)
    summary = {k: v for k, v in res.items() if k not in ("per_reader", "by_method", "breakdown", "fooled")}
    c.emit({**summary, "report": str(path)}, as_json, f"{summary.get('answers', 0)} answers analysed → {path}")


@app.command("labelstudio-export")
@c.handles_errors
def ls_export(study: Path = ReaderStudyArg,
              out: Path = typer.Option(..., help="Folder for the tasks, the labelling config and a copy of items/."),
              url_prefix: str = typer.Option("/data/local-files/?d=items/", help="How Label Studio addresses the "
                                             "copied images (its local-files URL to OUT/items/).")):
    """Label Studio tasks (no key in them), a labelling config and a copy of ``items/`` alone:
    point Label Studio's local-files root at OUT, never at the study folder (it holds the key)."""
    from dermsynth.reader_study.labelstudio import export_tasks

    c.emit({"tasks": str(export_tasks(existing_study(study), out, url_prefix))}, False, f"tasks in {out}")


@app.command("labelstudio-import")
@c.handles_errors
def ls_import(study: Path = ReaderStudyArg,
              export_json: Path = typer.Argument(..., help="Label Studio's JSON export (Export → JSON)."),
              as_json: bool = c.JsonOpt):
    """Add the answers from a Label Studio JSON export (annotators become readers ls:NAME)."""
    from dermsynth.reader_study.labelstudio import import_annotations

    check_annotations(export_json)
    res = import_annotations(existing_study(study), export_json)
    c.emit(res, as_json, f"added {res['added']}, already there {res['repeated']}, skipped {res['skipped']}")


def check_annotations(export_json: Path) -> None:
    """A Label Studio JSON export holds a list of tasks, some with annotations; anything else
    (a JSON object, the study's own un-annotated task export) is named as such, never "added 0"."""
    import json

    try:
        tasks = json.loads(export_json.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the Label Studio export {export_json}: {exc}") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise DataError(f"{export_json} is not a Label Studio JSON export (a list of tasks) but a JSON "
                        f"{type(tasks).__name__}; in Label Studio use Export → JSON")
    if not any(t.get("annotations") for t in tasks):
        raise DataError(f"{export_json} holds {len(tasks)} task(s) but no annotation: it is a task list (e.g. "
                        "`labelstudio-export`'s own output), not an export after annotating; annotate in Label "
                        "Studio, then Export → JSON")
