"""What downstream tasks read from a launch operator (its ``.output``).

A launch task that a user marked *success* while it waited has no return value (Airflow cancelled
the remote run and ran none of the operator's code), and plain ``XComArg`` hands ``None`` to the
downstream task, which then fails far from the cause (``TypeError: 'NoneType' object is not
subscriptable``). This ``XComArg`` raises instead, naming the task that left no result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk.definitions.xcom_arg import PlainXComArg

RETURN_KEY = "return_value"


class MissingResultError(AirflowException):
    """A downstream task read the result of a launch task that left none."""


class JobResultArg(PlainXComArg):  # type: ignore[misc]
    """``task.output`` of a :class:`~modelops_provider.core.operators.RemoteJobOperator`."""

    __slots__ = ()

    def resolve(self, context: Mapping[str, Any]) -> Any:
        value = super().resolve(context)
        if value is None and self.key == RETURN_KEY:
            task_id = self.operator.task_id
            what = getattr(self.operator, "what", "remote job")
            raise MissingResultError(
                f"Task {task_id!r} left no return value: it was marked success without finishing its {what} "
                f"(marking a waiting task success or failed cancels its {what}). "
                f"Clear {task_id!r} to run it again."
            )
        return value
