"""Training on a GPU work pool: the ``train`` deployment in prefect.yaml, and handing a preprocessed person
over to it (no GPU here: what is checked is what reaches the pool)."""

from __future__ import annotations

import pytest
import yaml

from radnerf.errors import RadNerfError
from tests.conftest import REPO


def test_prefect_yaml_sends_training_to_the_gpu_pool():
    from flows.train import DEPLOYMENT, TRAIN_STAGES
    from radnerf.pipeline import PREPROCESS, STAGES

    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    flow_name, name = DEPLOYMENT.split("/")
    gpu = deployments[name]
    assert gpu["entrypoint"] == f"flows/train.py:{flow_name}" and gpu["work_pool"]["name"] == "radnerf-gpu"
    assert deployments["persons"]["entrypoint"] == "flows/persons.py:persons"
    assert TRAIN_STAGES[0] == "train-head" and [s.name for s in STAGES] == [*PREPROCESS, *TRAIN_STAGES]


@pytest.fixture
def gpu_deployment(prefect_harness):
    """``train/gpu`` on a ``radnerf-gpu`` pool with no worker: runs wait there."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="radnerf-gpu", type="process"))
        except ObjectAlreadyExists:
            pass
        flow_id = client.create_flow_from_name("train")
        client.create_deployment(flow_id, "gpu", work_pool_name="radnerf-gpu", entrypoint="flows/train.py:train")
    return "train/gpu"


def test_handing_training_over_reaches_the_pool_and_says_when_no_worker_takes_it(gpu_deployment):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.states import Cancelled

    from flows.train import train_on_pool

    overrides = ["paths.artifacts=/shared/artifacts"]
    with pytest.raises(RadNerfError, match=r"training of ann \(train/gpu, flow run (\S+)\) is still Scheduled") as e:
        train_on_pool("ann", "paper", overrides, stages=["train-head"], timeout=1)
    assert "prefect worker start --pool radnerf-gpu" in e.value.hint
    run_name = e.value.message.split("flow run ")[1].split(")")[0]
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
        client.set_flow_run_state(run.id, Cancelled(), force=True)  # no worker will ever take it
    assert run.work_pool_name == "radnerf-gpu"
    assert run.parameters == {"person": "ann", "preset": "paper", "overrides": overrides, "stages": ["train-head"]}


def test_handing_over_to_a_deployment_that_does_not_exist_says_how_to_create_it(prefect_harness):
    from flows.train import train_on_pool

    with pytest.raises(RadNerfError, match="there is no deployment 'train/nowhere'") as e:
        train_on_pool("ann", "paper", [], deployment="train/nowhere", timeout=1)
    assert "prefect deploy --all" in e.value.hint


def test_training_a_person_that_was_not_preprocessed_names_what_is_missing(prefect_harness, tmp_path):
    from flows.train import train

    state = train(person="nobody", preset="smoke", stages=["train-head"], return_state=True,
                  overrides=[f"paths.artifacts={tmp_path}", "mlflow.enabled=false"])
    assert state.is_failed()
    with pytest.raises(RadNerfError, match="nobody"):
        state.result()


def test_the_person_flow_preprocesses_here_and_hands_the_rest_to_the_pool(monkeypatch, tmp_path):
    """``person(train_on="train/gpu")``: preprocessing where the flow runs, the stages after it on the deployment's
    pool with the same person, preset and overrides, and one result with both halves."""
    import flows.person
    import flows.train
    from flows.person import PersonRun
    from radnerf.pipeline import PREPROCESS
    from radnerf.stage_io import StageResult

    def result(stage: str) -> StageResult:
        return StageResult(stage, tmp_path, (tmp_path / stage,), False, 1.0, {}, 0.0)

    ran, handed = [], []

    def run_here(cfg, stages=None, run_name=None, tags=None):
        ran.append((cfg.person, list(stages)))
        return PersonRun(cfg.person, {s: result(s) for s in stages})

    def run_there(person, preset, overrides, stages=None, deployment="train/gpu", timeout=None):
        handed.append((person, preset, overrides, deployment))
        return PersonRun(person, {s: result(s) for s in ("train-head", "preview")}, video="preview.mp4").to_dict()

    monkeypatch.setattr(flows.person, "run_pipeline", run_here)
    monkeypatch.setattr(flows.train, "train_on_pool", run_there)
    overrides = [f"paths.artifacts={tmp_path}"]
    out = flows.person.person.fn(person="ann", preset="smoke", overrides=overrides, train_on="train/gpu")
    assert ran == [("ann", list(PREPROCESS))]
    assert handed == [("ann", "smoke", overrides, "train/gpu")]
    assert list(out["stages"]) == [*PREPROCESS, "train-head", "preview"] and out["video"] == "preview.mp4"
