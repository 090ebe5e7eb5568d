"""The persons flow: several persons at once, each in its own folder, lock and MLflow run; one failing
person does not stop the others and the run names it."""

from __future__ import annotations

import shutil

import pytest

from radnerf.errors import ConfigError

STAGES = ["ingest", "landmarks"]
"""Enough of the pipeline for two persons to overlap (the stages themselves are tested elsewhere)."""


@pytest.mark.slow
def test_persons_run_side_by_side_and_a_failing_one_is_named(prefect_harness, talking_clip, tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.persons import PersonsFailed, persons

    bob_video = shutil.copy(talking_clip, tmp_path / "bob.mp4")
    corrupt = tmp_path / "carol.mp4"
    corrupt.write_bytes(b"not a video")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    people = [{"person": "alice", "video": str(talking_clip)}, {"person": "bob", "video": str(bob_video)},
              {"person": "carol", "video": str(corrupt)}]
    state = persons(people=people, preset="smoke", stages=STAGES, return_state=True,
                    overrides=[f"paths.artifacts={tmp_path / 'a'}", f"mlflow.tracking_uri={uri}"])

    assert state.is_failed() and "1 of 3 persons failed: carol" in state.message
    error = state.result(raise_on_failure=False)
    assert isinstance(error, PersonsFailed)
    assert list(error.result["failed"]) == ["carol"] and "InputError" in error.result["failed"]["carol"]
    done = error.result["done"]
    assert sorted(done) == ["alice", "bob"]
    for name in ("alice", "bob"):
        assert list(done[name]["stages"]) == STAGES
        frames = int(done[name]["stages"]["ingest"]["metrics"]["frames"])
        assert done[name]["stages"]["ingest"]["root"] == str(tmp_path / "a" / name)
        assert len(list((tmp_path / "a" / name / "ori_imgs").glob("*.lms"))) == frames > 25
    # Side by side: each person's pipeline started before the other's ended.
    spans = {name: (min(s["started"] for s in run["stages"].values()),
                    max(s["started"] + s["seconds"] for s in run["stages"].values())) for name, run in done.items()}
    assert spans["alice"][0] < spans["bob"][1] and spans["bob"][0] < spans["alice"][1], spans

    # Each person has its own MLflow parent run, its stages nested under it; carol's ended FAILED.
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = {r.data.tags["person"]: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert sorted(parents) == ["alice", "bob", "carol"]
    assert parents["carol"].info.status == "FAILED"
    for name in ("alice", "bob"):
        assert parents[name].info.status == "FINISHED"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[name].info.run_id]
        assert sorted(r.data.tags["mlflow.runName"] for r in children) == sorted(STAGES)


def test_people_are_checked_before_anything_runs():
    from flows.persons import person_specs

    assert [s.person for s in person_specs([{"person": "a", "video": "a.mp4"}, {"person": "b"}])] == ["a", "b"]
    with pytest.raises(ConfigError, match="'a' is listed twice"):
        person_specs([{"person": "a"}, {"person": "a", "video": "other.mp4"}])
    with pytest.raises(ConfigError, match=r"unknown keys \['vidoe'\]"):
        person_specs([{"person": "a", "vidoe": "a.mp4"}])
    with pytest.raises(ConfigError, match="no person"):
        person_specs([{"video": "a.mp4"}])


def test_a_persons_own_overrides_win_over_the_shared_ones():
    from flows.persons import merge_overrides

    merged = merge_overrides(["ingest.size=256", "mlflow.enabled=false"], ["ingest.size=512", "+extra.key=1"])
    assert merged == ["mlflow.enabled=false", "ingest.size=512", "+extra.key=1"]
