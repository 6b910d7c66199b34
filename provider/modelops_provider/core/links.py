"""Extra links whose URL the operator computes and pushes to XCom itself (before it defers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey


class XComLink(BaseOperatorLink):
    """A link read back from the XCom the operator pushed under :attr:`xcom_key`."""

    name = ""

    @property
    def xcom_key(self) -> str:
        # Explicit: Airflow 2.11's BaseOperatorLink lacks the attribute.
        return f"_link_{type(self).__name__}"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(key=self.xcom_key, ti_key=ti_key)
        return str(value) if value else ""

    @classmethod
    def push(cls, context: Context, url: str | None) -> None:
        if url:
            context["ti"].xcom_push(key=cls().xcom_key, value=url)
