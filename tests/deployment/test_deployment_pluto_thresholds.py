"""A Pluto threshold trigger in a real deployment: the keep-alive pinging from the triggerer reports
the CANCELLED in its task log, and the finish task says who closed the run and applies its policy."""

from __future__ import annotations

from airflow_deployment import AirflowDeployment


def test_a_tripped_threshold_is_reported_by_the_keep_alive_and_the_finish(
    deployment: AirflowDeployment, studio: str
) -> None:
    dag = "deploy_pluto_thresholds"
    deployment.control.foundry_studio(studio, outcome="SUCCEEDED", duration_s=20)  # pings meanwhile
    run = deployment.trigger(dag, {"studio": studio})
    assert deployment.wait_run(dag, run) == "success"
    start = deployment.xcom(dag, run, "pluto_start")
    [pluto] = [r for r in deployment.control.pluto_runs() if r["runId"] == start["runId"]]

    keep_alive = deployment.xcom(dag, run, "pluto_keep_alive")
    assert keep_alive["status"] == "CANCELLED" and keep_alive["stoppedBecause"] == "closed"
    assert f"Pluto run {start['runId']} was CANCELLED in Pluto" in deployment.log(dag, run, "pluto_keep_alive", 1)

    finish_log = deployment.log(dag, run, "pluto_finish", 1)
    assert "was already CANCELLED before this DAG run finished (closed by threshold-trigger" in finish_log
    # Policy "reopen" (the default): the run ends as the DAG run did, Pluto's verdict kept.
    assert pluto["status"] == "COMPLETED"
    closed = pluto["statusMetadata"]["closedByServer"]
    assert closed["source"] == "threshold-trigger" and closed["statusMetadata"]["reason"] == "threshold-exceeded"
    assert [(e["toStatus"], e["source"]) for e in pluto["statusHistory"]] == [
        ("CANCELLED", "threshold-trigger"),
        ("RUNNING", "api"),
        ("COMPLETED", "api"),
    ]
