"""Which model version a task means: a RID, or the run a launch task returned.

``ModelStudioLaunchOperator`` returns the run; its ``resolvedOutputs[<alias>]`` names the model, the
version and (when Foundry links one) the experiment. Every operator and sensor that takes "a model
version" accepts either form through :func:`resolve_version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops_provider.core.validation import require_rid


@dataclass(frozen=True)
class VersionRef:
    model_version_rid: str
    model_rid: str | None = None
    experiment_rid: str | None = None
    # The training run's job: its experiment carries the same jobRid.
    job_rid: str | None = None


def resolve_version(value: Any, output_alias: str, param: str, *, model_rid: str | None = None) -> VersionRef | None:
    """The version ``value`` names (None when empty). ``value`` is a model version RID, or a launch
    task's returned run, whose ``resolvedOutputs[output_alias]`` is read. ``model_rid`` fills in the
    model of a bare RID. Raises ValueError naming ``param`` on anything else."""
    if value in (None, ""):
        return None
    if isinstance(value, dict):
        outputs = value.get("resolvedOutputs")
        if not isinstance(outputs, dict) or output_alias not in outputs:
            raise ValueError(
                f"{param} is a run without output {output_alias!r} (output_alias); its resolvedOutputs are {outputs!r}"
            )
        output = outputs[output_alias] or {}
        version = require_rid(param, output.get("modelVersionRid"))
        job = value.get("jobRid")
        return VersionRef(
            model_version_rid=version,
            model_rid=require_rid(f"{param} model", output["modelRid"]) if output.get("modelRid") else model_rid,
            experiment_rid=output.get("experimentRid") or None,
            job_rid=job if isinstance(job, str) and job else None,
        )
    return VersionRef(model_version_rid=require_rid(param, value), model_rid=model_rid)
