"""Task contracts (issue 26): payloads are typed, results reach the next task by parameter name,
and a result of the wrong type stops the graph where it is handed over, naming both tasks."""

from __future__ import annotations

import pytest

from dermsynth.experiments.graph import Task, run_graph
from dermsynth.experiments.runner import resolve_runs
from dermsynth.experiments.spec import GeneratorSpec, validate_experiment
from dermsynth.experiments.synthetic_stage import synthetic_tasks
from dermsynth.experiments.task_contract import TaskContractError
from dermsynth.experiments.task_payloads import AuditPayload, GeneratePayload, GeneratorModels, Payload
from dermsynth.train.spec import RunSpec


class Folder(Payload):
    path: str


def makes_models(payload: Folder) -> GeneratorModels:
    return GeneratorModels(builtin=payload.path)


def makes_a_plain_path(payload: Folder) -> GeneratorModels:
    return payload.path  # the old contract: a str where a GeneratorModels is declared


def makes_a_dict(payload: Folder) -> dict:
    return {"builtin": payload.path}


def uses_models(payload: Folder, models: GeneratorModels | None = None) -> str:
    return f"{payload.path} used {models.builtin if models else 'none'}"


def uses_two(payload: Folder, first: GeneratorModels, second: GeneratorModels) -> str:
    return f"{first.builtin}+{second.builtin}"


def test_results_are_passed_by_name_and_checked(tmp_path):
    tasks = [Task("train", "train-generator", makes_models, Folder(path="m")),
             Task("generate", "generate", uses_models, Folder(path="s"), inputs={"models": "train"})]
    assert run_graph(tasks, tmp_path)["generate"] == "s used m"
    # one task feeding two inputs, with another that only has to finish first
    both = [Task("train", "train-generator", makes_models, Folder(path="m")),
            Task("other", "train-generator", makes_models, Folder(path="o")),
            Task("pair", "generate", uses_two, Folder(path="s"), inputs={"first": "train", "second": "train"},
                 after=["other"])]
    assert run_graph(both, tmp_path)["pair"] == "m+m"


def test_a_result_of_the_wrong_type_fails_at_the_boundary(tmp_path):
    with pytest.raises(TaskContractError, match=r"task train: makes_a_plain_path returned a str 'm'.*GeneratorModels"):
        run_graph([Task("train", "train-generator", makes_a_plain_path, Folder(path="m"))], tmp_path)
    # a producer that declares dict honestly: the consumer's input check names both tasks
    tasks = [Task("finetune", "finetune", makes_a_dict, Folder(path="m")),
             Task("generate/a", "generate", uses_models, Folder(path="s"), inputs={"models": "finetune"})]
    with pytest.raises(TaskContractError, match=r"task generate/a: input 'models' of uses_models is the result of "
                                                r"task finetune, a dict; uses_models declares GeneratorModels"):
        run_graph(tasks, tmp_path)
    assert not (tmp_path / "generate_a.json").exists()  # refused before it ran


def test_a_wrong_payload_or_an_unknown_input_is_refused(tmp_path):
    with pytest.raises(TaskContractError, match="takes a .*Folder.* payload, got dict"):
        run_graph([Task("t", "train-generator", makes_models, {"path": "m"})], tmp_path)
    tasks = [Task("train", "train-generator", makes_models, Folder(path="m")),
             Task("generate", "generate", uses_models, Folder(path="s"), inputs={"model": "train"})]
    with pytest.raises(TaskContractError, match=r"no input 'model' \(fed by task train\); its inputs: \['models'\]"):
        run_graph(tasks, tmp_path)


def test_a_payload_with_a_misspelt_field_fails_where_the_task_is_planned():
    with pytest.raises(ValueError, match="rns"):
        AuditPayload(rns=[RunSpec()])


def test_the_study_graph_names_its_inputs(tmp_path, demo_root):
    base = dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4, n_real=2,
                cache_dir=str(demo_root / "cache"))
    spec = validate_experiment({"name": "t", "seeds": 1, "base": base, "grid": {"synthetic_per_real": [1]},
                                "generator": {"backend": "builtin", "per_image": 1, "methods": ["inpaint"],
                                              "finetune": "per-class"}})
    tasks, _ = synthetic_tasks(spec, resolve_runs(spec, tmp_path), tmp_path)
    kinds = {t.kind: t for t in tasks}
    assert kinds["finetune"].inputs == {"base_model": "train-generator/pool"}
    assert set(kinds["generate"].inputs) == {"models"} and kinds["generate"].inputs["models"].startswith("finetune/")
    assert isinstance(kinds["generate"].payload, GeneratePayload)
    assert isinstance(kinds["generate"].payload.gen, GeneratorSpec)
