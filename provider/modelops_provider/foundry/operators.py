"""Operators that start work in Foundry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelops_provider.core import assets
from modelops_provider.core.links import XComLink
from modelops_provider.core.operators import RemoteJobOperator
from modelops_provider.core.validation import require_rid
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.assets import MODEL_VERSIONS_ALIAS, model_asset_uri
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.links import ModelStudioRunLink
from modelops_provider.foundry.triggers import ModelStudioRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ModelStudioLaunchOperator(RemoteJobOperator):
    """Launch a training run of a Foundry Model Studio and (by default) wait for its build.

    Returns the run as a JSON-able dict (camelCase, as Foundry spells it) with ``resolvedOutputs``;
    downstream tasks read the new model version from
    ``resolvedOutputs.<alias>.modelVersionRid``. Before waiting it pushes ``run_id``, ``build_rid``
    and ``model_studio_rid`` to XCom and the "Model Studio run" link.

    A task retry re-attaches to the run an earlier try launched (Airflow 3.3's task state store) while
    that run is running or succeeded; only a failed or cancelled run is launched anew.

    :param model_studio_rid: RID of the Model Studio (templated).
    :param wait_for_completion: wait for the build to end (default) or return right after launch.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between looks at the run.
    :param timeout: seconds from launch after which the build is cancelled and the task fails.
    :param foundry_conn_id: Airflow connection of type ``foundry``.
    :param emit_asset_events: emit an asset event per model version produced (default True); see
        :mod:`modelops_provider.foundry.assets` for the URI scheme.
    """

    template_fields: Sequence[str] = ("model_studio_rid", "foundry_conn_id")
    operator_extra_links = (ModelStudioRunLink(),)
    hook_class = FoundryHook
    trigger_class = ModelStudioRunTrigger
    external_id_key = "foundry_model_studio_run"
    what = "Model Studio run"
    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        model_studio_rid: str,
        foundry_conn_id: str = FoundryHook.default_conn_name,
        emit_asset_events: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_studio_rid = model_studio_rid
        self.foundry_conn_id = foundry_conn_id
        self.emit_asset_events = emit_asset_events
        if emit_asset_events:
            self.outlets = [*self.outlets, assets.alias(MODEL_VERSIONS_ALIAS)]

    @property
    def conn_id(self) -> str:
        return self.foundry_conn_id

    def validate(self) -> None:
        require_rid("model_studio_rid", self.model_studio_rid)

    def submit(self, hook: FoundryHook, context: Context) -> dict[str, Any]:
        run = hook.call(hook.api.launch_model_studio(self.model_studio_rid, unknown_since=self.unknown_since))
        return {
            "model_studio_rid": self.model_studio_rid,
            "run_id": run.run_id,
            "build_rid": run.build_rid,
            "config_version": run.config_version,
        }

    def describe(self, job: dict[str, Any]) -> str:
        return f"Model Studio run {job.get('run_id')} (build {job.get('build_rid')})"

    def link_urls(self, hook: FoundryHook, job: dict[str, Any]) -> dict[type[XComLink], str]:
        return {ModelStudioRunLink: hook.run_url(job["model_studio_rid"], job["run_id"])}

    def on_success(self, hook: FoundryHook, job: dict[str, Any], snap: Snapshot, context: Context) -> Any:
        run = snap.data
        if self.emit_asset_events:
            for alias_name, output in (run.get("resolvedOutputs") or {}).items():
                if output.get("type") != "model" or not output.get("modelRid"):
                    continue
                uri = model_asset_uri(hook.service.base_url, output["modelRid"])
                extra = {
                    "modelVersionRid": output.get("modelVersionRid"),
                    "runId": run.get("runId"),
                    "configVersion": run.get("configVersion"),
                    "outputAlias": alias_name,
                    "modelStudioRid": job["model_studio_rid"],
                }
                assets.emit(context, MODEL_VERSIONS_ALIAS, uri, extra, model=True)
                self.log.info("Asset event for %s: %s", uri, extra)
        return run

    def failure_message(self, hook: FoundryHook, job: dict[str, Any], snap: Snapshot) -> str:
        return (
            f"Model Studio run {job['run_id']} (build {job['build_rid']}) ended {snap.status}. "
            f"See {hook.run_url(job['model_studio_rid'], job['run_id'])}"
        )
