"""Export a run as a folder a colleague can use without dermsynth: weights (safetensors), a
timm-style ``config.json`` (architecture, classes, preprocessing), a ``hubconf.py`` for
``torch.hub.load(FOLDER, "model", source="local")``, and the model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dermsynth import files
from dermsynth.deploy.model_card import card_data, write_card
from dermsynth.errors import DataError
from dermsynth.experiments.external_evaluation import external_folders_of
from dermsynth.train.checkpoint import bundle_meta, weights_path

HUBCONF = '''"""torch.hub entry point, written by dermsynth classifier export: needs only torch, timm and safetensors.

    import torch
    model = torch.hub.load("THIS_FOLDER", "model", source="local")
    model.label_names  # class of each output
"""

import json
from pathlib import Path

dependencies = ["torch", "timm", "safetensors"]


def model(**kwargs):
    import timm
    from safetensors.torch import load_file

    here = Path(__file__).resolve().parent
    cfg = json.loads((here / "config.json").read_text())
    net = timm.create_model(cfg["architecture"], num_classes=cfg["num_classes"], pretrained=False, **kwargs)
    state = load_file(str(here / "model.safetensors"))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    net.pretrained_cfg = {**net.pretrained_cfg, **cfg["pretrained_cfg"]}
    net.label_names = cfg["label_names"]
    return net.eval()
'''

README = """# {backbone} skin-condition classifier (dermsynth run {run_id})

Files: `model.safetensors` (weights), `config.json` (architecture, classes, preprocessing),
`model_card.md` / `model_card.json` (data, metrics per skin-type group, limits), `hubconf.py`.

```python
import timm, json
cfg = json.load(open("config.json"))
model = timm.create_model(cfg["architecture"], num_classes=cfg["num_classes"], pretrained=True,
                          pretrained_cfg_overlay={{"file": "model.safetensors",
                                                  "num_classes": cfg["num_classes"]}}).eval()
# or: model = torch.hub.load(".", "model", source="local")
```

Preprocessing (as in evaluation): RGB; shorter side resized to {size} px (bicubic) and centre-cropped;
scaled to [0, 1]; normalised with mean {mean} and std {std}. Output i is class `cfg["label_names"][i]`.
(`num_classes` in the overlay matters: without it timm drops the trained head as a mismatch.)
"""


def export_run(record_path: str | Path, out: str | Path) -> Path:
    """Write the export folder for the run whose record is ``record_path`` (``OUT/runs/<id>.json``)."""
    record_path, out = Path(record_path), Path(out)
    if not record_path.is_file():
        raise DataError(f"{record_path} is not a run record; pass OUT/runs/<run_id>.json")
    record = files.read_json(record_path)
    runs, exp = record_path.parent, record_path.parent.parent
    meta = bundle_meta(runs, record["run_id"])  # a clear error when the run kept no weights
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_path(runs, record["run_id"]), out / "model.safetensors")
    pre = meta["preprocessing"]
    size = pre["image_size"]
    config = {"architecture": meta["backbone"], "num_classes": meta["num_classes"], "label_names": meta["classes"],
              "pretrained_cfg": {"input_size": [3, size, size], "mean": pre["mean"], "std": pre["std"],
                                 "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bicubic",
                                 "num_classes": meta["num_classes"]},
              "preprocessing": pre, "dermsynth_run_id": record["run_id"]}
    files.write_text(out / "config.json", json.dumps(config, indent=2))
    files.write_text(out / "hubconf.py", HUBCONF)
    files.write_text(out / "README.md", README.format(backbone=meta["backbone"], run_id=record["run_id"], size=size,
                                                   mean=pre["mean"], std=pre["std"]))
    external = [files.read_json(f / "runs" / f"{record['run_id']}.json") for f in external_folders_of(exp)
                if (f / "runs" / f"{record['run_id']}.json").exists()]
    write_card(card_data(record, meta, external), out)
    return out
