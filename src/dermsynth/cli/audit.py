"""``dermsynth audit``: leakage and memorization; exit 1 when an audit finds a problem."""

from __future__ import annotations

from pathlib import Path

import typer

from dermsynth.cli import common as c
from dermsynth.errors import EXIT_AUDIT_FAILED

app = typer.Typer(no_args_is_help=True)


@app.command("leakage")
@c.handles_errors
def audit_leakage(dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
                  n_test: int = c.NTestOpt, n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt,
                  store: Path | None = typer.Option(None, help="Synthetic store to check (its manifest and the "
                                                    "generator's recorded training ids)."),
                  problems_file: Path | None = typer.Option(None, "--list", help="Where to list every violation "
                                                            "(default STORE/leakage_problems.txt)."),
                  as_json: bool = c.JsonOpt):
    """Prove that no held-out image reached a generator or a training set; exit 1 on a violation."""
    from dermsynth.data.leakage import audit_store, require_auditable, store_account
    from dermsynth.data.splits import load_split

    n_syn, n_ids = require_auditable(store)  # before the split: a mistyped --store fails at once
    split = load_split(c.split_spec(dataset, root, classes, n_test, n_val, split_seed))
    problems = audit_store(split, store)
    account = store_account(split, store)
    verdict = "leak" if problems else ("clean" if account["training_set_known"] else "unproven")
    listed = None
    if problems:
        listed = problems_file or store / "leakage_problems.txt"
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("\n".join(problems) + "\n")

    def human():
        for p in problems[:SHOWN]:
            c.say(f"✗ {p}")
        if len(problems) > SHOWN:
            c.say(f"… {len(problems) - SHOWN} more")
        if account["excluded_held_out_reference"]:
            c.say(f"{account['excluded_held_out_reference']} of the {n_syn} imported images were made from a "
                  "validation/test image: excluded from training (a run draws only its training images' own)")
        if verdict == "leak":
            c.say(f"LEAK: {len(problems)} violation(s), all listed in {listed}")
        elif verdict == "unproven":
            c.say(f"UNPROVEN: no held-out image among the synthetic references or split groups, but the "
                  f"generator's training set is {account['training_set']}; no audit can show that no held-out "
                  f"image was among it. The conservative split holds out only images none of these synthetic "
                  f"images was made from: held_out_avoids_store = \"{store}\" in the config's [base]")
        else:
            c.say(f"CLEAN: no held-out image among {n_syn} synthetic references, {n_ids} generator training images "
                  "or split groups")

    c.emit({"clean": verdict == "clean", "verdict": verdict, "problems": problems, "n_synthetic": n_syn,
            "n_training_ids": n_ids, "account": account, "problems_file": str(listed) if listed else None},
           as_json, human)
    if problems:
        raise typer.Exit(EXIT_AUDIT_FAILED)


SHOWN = 10  # violations printed; the rest are in the --list file


@app.command("memorization")
@c.handles_errors
def audit_memorization(store: Path = typer.Option(..., help="Synthetic store."), dataset: str = c.DatasetOpt,
                       root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt, n_test: int = c.NTestOpt,
                       n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt, encoder: str = c.EncoderOpt,
                       quantile: float = typer.Option(0.01, help="Calibration quantile of real NN distances."),
                       max_flagged: int = typer.Option(0, help="Exit 1 above this many flags."),
                       study: Path | None = c.AnalysisStudyOpt,
                       out: Path | None = typer.Option(None, help="Folder for memorization.csv/json (default "
                                                       "STUDY/analysis/memorization, else ./memorization)."),
                       results: Path | None = c.OldResultsOpt, as_json: bool = c.JsonOpt):
    """Nearest real neighbours of every synthetic image; flags copies (writes memorization.csv/json).

    With --study, the study's own split (stratification, cleaning) replaces the split options."""
    from dermsynth.audits.memorization import memorization_study
    from dermsynth.cli.analysis import study_or_options_split
    from dermsynth.models.encoders import make_encoder

    study = c.renamed(study, results, "--results", "--study")
    folder = c.analysis_out(out, study, "memorization")
    enc = None if encoder.startswith("pixels") else make_encoder(encoder)
    split = study_or_options_split(study, store, dataset, root, classes, n_test, n_val, split_seed)
    rep = memorization_study(split, store, enc, folder, quantile)
    flagged = rep.flagged

    def human():
        for _, r in flagged.head(20).iterrows():
            c.say(f"✗ {r['synth_id']} ({r['method']}) is a near-copy of a real image")
        c.say(f"{len(flagged)} of {len(rep.table)} synthetic images flagged → {folder / 'memorization.csv'}")

    c.emit({"flagged": int(len(flagged)), "n_synthetic": int(len(rep.table)), "thresholds": rep.thresholds,
          "flagged_ids": list(flagged["synth_id"]), "out": str(folder)}, as_json, human)
    if len(flagged) > max_flagged:
        raise typer.Exit(EXIT_AUDIT_FAILED)
