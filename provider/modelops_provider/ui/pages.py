"""HTML of the "Model runs" page and the "Remote run" tab: server-rendered, no script, no build step.

Every value from a record is escaped; remote links are followed only when they are http(s) URLs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from modelops_provider.core.records import OUTCOMES
from modelops_provider.ui.query import RunPage, RunRow

SERVICES = ("Foundry", "DuckLake", "Pluto")
DEFAULT_PER_PAGE = 50

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a202c;font-size:14px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e2e8f0;
vertical-align:top}th{background:#f7fafc;font-weight:600;white-space:nowrap}
td.id{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all;max-width:22em}
a{color:#2b6cb0;text-decoration:none}a:hover{text-decoration:underline}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.succeeded,.passed{background:#c6f6d5;color:#22543d}.failed,.not-passed{background:#fed7d7;color:#822727}
.running{background:#bee3f8;color:#2a4365}.cancelled,.unknown{background:#e2e8f0;color:#2d3748}
.timed-out{background:#feebc8;color:#7b341e}td.when{white-space:nowrap}td.verdict .badge{white-space:normal}
form.filters{display:flex;gap:12px;align-items:end;margin-bottom:12px;flex-wrap:wrap}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#4a5568}
select,button{font-size:14px;padding:4px 6px}.muted{color:#718096}.pager{margin-top:10px;display:flex;gap:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{color:#4a5568}dd{margin:0}
"""


# The Airflow UI shows a plugin page in an iframe sandboxed without top navigation and popups, so a
# plain link would open the Airflow UI inside the frame and a remote link would not open at all. The
# frame is same-origin, so links are followed from the top window: Airflow links through the UI's own
# router (history + popstate, no reload), remote links through an anchor clicked in the top document.
FRAME_LINKS = """
document.addEventListener("click", function (ev) {
  var a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || window.top === window || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  try {
    var top = window.top;
    if (a.dataset.airflow !== undefined) {
      top.history.pushState(null, "", a.href);
      top.dispatchEvent(new PopStateEvent("popstate", {state: null}));
    } else if (a.target === "_blank") {
      var out = top.document.createElement("a");
      out.href = a.href; out.target = "_blank"; out.rel = "noopener";
      top.document.body.appendChild(out); out.click(); out.remove();
    } else { return; }
    ev.preventDefault();
  } catch (e) { /* not reachable: let the link behave as a link */ }
});
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}<script>{FRAME_LINKS}</script></body></html>"
    )


def when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(record: Mapping[str, Any], now: float | None = None) -> str:
    start = record.get("started_at")
    if not isinstance(start, (int, float)):
        return ""
    end = record.get("ended_at")
    seconds = (end if isinstance(end, (int, float)) else (time.time() if now is None else now)) - start
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
    return text if isinstance(end, (int, float)) else f"{text} so far"


def _remote_link(url: Any, text: str) -> str:
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        return f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(text)}</a>'
    return escape(text)


class Links:
    """URLs into the Airflow UI (under ``[api] base_url``'s path) and into this plugin."""

    def __init__(self, base_path: str, plugin_prefix: str) -> None:
        self.base = base_path.rstrip("/")
        self.plugin = plugin_prefix

    def dag(self, dag_id: str) -> str:
        return f"{self.base}/dags/{quote(dag_id, safe='')}"

    def dag_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.dag(dag_id)}/runs/{quote(run_id, safe='')}"

    def task(self, row: RunRow) -> str:
        url = f"{self.dag_run(row.dag_id, row.run_id)}/tasks/{quote(row.task_id, safe='')}"
        return url + (f"/mapped/{row.map_index}" if row.map_index >= 0 else "")

    def remote_tab(self, row: RunRow) -> str:
        return f"{self.task(row)}/plugin/remote-run"

    def runs(self, **params: Any) -> str:
        if params.get("per_page") == DEFAULT_PER_PAGE:
            params.pop("per_page")
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.base}{self.plugin}/runs" + (f"?{query}" if query else "")


def outcome_badge(row: RunRow) -> str:
    record = row.record
    if row.abandoned:
        title = f"the task ended ({row.task_state}) while the run was followed; its end was not recorded"
        return f'<span class="badge unknown" title="{escape(title)}">not followed</span>'
    outcome = str(record.get("outcome") or "unknown")
    return f'<span class="badge {escape(outcome.replace(" ", "-"))}">{escape(outcome)}</span>'


def verdict_cell(record: Mapping[str, Any]) -> str:
    verdict = record.get("verdict")
    if not verdict:
        return ""
    passed = record.get("passed")
    css = "passed" if passed is True else "not-passed" if passed is False else "unknown"
    return f'<span class="badge {css}">{escape(str(verdict))}</span>'


def _options(values: Iterable[str], selected: str | None, any_label: str) -> str:
    out = [f'<option value="">{escape(any_label)}</option>']
    for value in values:
        chosen = " selected" if value == selected else ""
        out.append(f'<option value="{escape(value)}"{chosen}>{escape(value)}</option>')
    return "".join(out)


def runs_page(page: RunPage, links: Links, *, dag_id: str | None, service: str | None, outcome: str | None) -> str:
    filters = (
        f'<form class="filters" method="get" action="{escape(links.runs())}">'
        f'<label>DAG<select name="dag_id" id="filter-dag">{_options(page.dag_ids, dag_id, "all DAGs")}</select></label>'
        f'<label>Service<select name="service" id="filter-service">{_options(SERVICES, service, "all services")}'
        f"</select></label>"
        f'<label>Status<select name="status" id="filter-status">{_options(OUTCOMES, outcome, "any status")}'
        f"</select></label>"
        '<button type="submit" id="apply-filters">Filter</button>'
        f'<a href="{escape(links.runs())}">reset</a></form>'
    )
    head = (
        "<tr><th>Service</th><th>DAG / DAG run / task</th><th>Remote run</th><th>Status</th><th>Started</th>"
        "<th>Duration</th><th>Model version</th><th>Verdict</th><th></th></tr>"
    )
    body = []
    for row in page.rows:
        r = row.record
        task = row.task_id + (f"[{row.map_index}]" if row.map_index >= 0 else "")
        status = escape(str(r.get("status") or ""))
        body.append(
            '<tr class="run">'
            f'<td>{escape(str(r.get("service") or ""))}<div class="muted">{escape(str(r.get("kind") or ""))}</div></td>'
            f'<td><a class="dag" href="{escape(links.dag(row.dag_id))}" data-airflow>{escape(row.dag_id)}</a><br>'
            f'<a class="dag-run" href="{escape(links.dag_run(row.dag_id, row.run_id))}" data-airflow>'
            f"{escape(row.run_id)}</a><br>"
            f'<a class="task" href="{escape(links.task(row))}" data-airflow>{escape(task)}</a></td>'
            f'<td class="id remote">{_remote_link(r.get("url"), str(r.get("remote_id") or ""))}</td>'
            f'<td>{outcome_badge(row)}<div class="muted">{status}</div></td>'
            f'<td class="when">{when(r.get("started_at"))}</td><td class="when">{duration(r)}</td>'
            f'<td class="id">{escape(str(r.get("model_version") or ""))}</td>'
            f'<td class="verdict">{verdict_cell(r)}</td>'
            f'<td><a class="detail" href="{escape(links.remote_tab(row))}" data-airflow>detail</a></td></tr>'
        )
    if not page.rows:
        body.append('<tr><td colspan="9" class="muted">No remote runs match.</td></tr>')
    nav = []
    params = {"dag_id": dag_id, "service": service, "status": outcome, "per_page": page.per_page}
    if page.page > 1:
        nav.append(f'<a rel="prev" href="{escape(links.runs(**params, page=page.page - 1))}">&larr; newer</a>')
    nav.append(f'<span class="muted">page {page.page} of {page.pages} &middot; {page.total} runs</span>')
    if page.page < page.pages:
        nav.append(f'<a rel="next" href="{escape(links.runs(**params, page=page.page + 1))}">older &rarr;</a>')
    return _page(
        "Model runs",
        "<h1>Model runs</h1>"
        '<p class="muted">Every remote run the ModelOps provider\'s tasks started or watched: Foundry training '
        "runs, metrics gates, promotions, deployment and inference checks, DuckLake model runs, Pluto tracking runs. "
        "Newest first.</p>"
        f'{filters}<table id="runs"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        f'<div class="pager">{"".join(nav)}</div>',
    )


def _table(table_id: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _e(value: Any) -> str:
    return "" if value is None else escape(str(value))


def no_record_page(dag_id: str, task_id: str) -> str:
    return _page(
        "Remote run",
        f'<p class="muted" id="no-remote-run">Task <b>{_e(task_id)}</b> of <b>{_e(dag_id)}</b> did not start or '
        "watch a remote run of the ModelOps provider (Foundry, DuckLake, Pluto), or it has not reached it "
        "yet in this try.</p>",
    )


def task_page(row: RunRow, detail: Mapping[str, Any] | None, result: Any, links: Links) -> str:
    r = row.record
    facts = [
        ("Service", f"{_e(r.get('service'))} {_e(r.get('kind'))}"),
        ("Remote run", _remote_link(r.get("url"), str(r.get("remote_id") or ""))),
        ("Status", f"{outcome_badge(row)} {_e(r.get('status'))}"),
        ("Task state", _e(row.task_state)),
        ("Started", when(r.get("started_at"))),
        ("Ended", when(r.get("ended_at"))),
        ("Duration", duration(r)),
        ("Model version", _e(r.get("model_version"))),
        ("Project", _e(r.get("project"))),
        ("Verdict", verdict_cell(r)),
        ("Message", _e(r.get("message"))),
    ]
    dl = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts if value.strip())
    parts = [
        f"<h1>{_e(r.get('service'))} {_e(r.get('kind'))} {_e(r.get('remote_id'))}</h1>",
        f'<dl id="facts">{dl}</dl>',
    ]
    events = r.get("events") or []
    parts.append("<h2>Status timeline</h2>")
    parts.append(
        _table(
            "timeline",
            ["time", "status", "outcome"],
            ([when(e[0]), _e(e[1]), _e(e[2] if len(e) > 2 else "")] for e in events if isinstance(e, list) and e),
        )
    )
    metrics = r.get("metrics") or {}
    if metrics:
        parts.append("<h2>Metrics</h2>")
        parts.append(_table("metrics", ["metric", "value"], ([_e(k), _e(v)] for k, v in metrics.items())))
    parts.extend(_service_detail(r, detail, result))
    links_html = [
        _remote_link(r.get("url"), f"Open in {r.get('service') or 'the service'}"),
        f'<a href="{escape(links.task(row))}" data-airflow>Task instance</a>',
        f'<a href="{escape(links.runs(dag_id=row.dag_id))}" data-airflow>All model runs of {_e(row.dag_id)}</a>',
    ]
    parts.append(f'<h2>Links</h2><p id="links">{" &middot; ".join(links_html)}</p>')
    return _page("Remote run", "".join(parts))


def _service_detail(record: Mapping[str, Any], detail: Mapping[str, Any] | None, result: Any) -> list[str]:
    parts: list[str] = []
    if detail and detail.get("steps") is not None:
        parts.append("<h2>DuckLake steps</h2>")
        parts.append(
            _table(
                "steps",
                ["model", "status", "rows affected", "started", "finished", "error"],
                (
                    [
                        _e(s.get("model_name")),
                        _e(s.get("status")),
                        _e(s.get("rows_affected")),
                        _e(s.get("started_at")),
                        _e(s.get("finished_at")),
                        _e(s.get("error_message")),
                    ]
                    for s in detail.get("steps") or []
                ),
            )
        )
        parts.append("<h2>Test results</h2>")
        parts.append(
            _table(
                "tests",
                ["model", "test", "status", "rows returned", "error"],
                (
                    [
                        _e(t.get("model_name")),
                        _e(t.get("test_name")),
                        _e(t.get("status")),
                        _e(t.get("rows_returned")),
                        _e(t.get("error_message")),
                    ]
                    for t in detail.get("tests") or []
                ),
            )
        )
    if isinstance(result, Mapping) and isinstance(result.get("resolvedOutputs"), Mapping):
        parts.append("<h2>Outputs</h2>")
        parts.append(
            _table(
                "outputs",
                ["alias", "model", "model version", "experiment"],
                (
                    [_e(alias), _e(o.get("modelRid")), _e(o.get("modelVersionRid")), _e(o.get("experimentRid"))]
                    for alias, o in result["resolvedOutputs"].items()
                    if isinstance(o, Mapping)
                ),
            )
        )
    if isinstance(result, Mapping) and isinstance(result.get("status"), Mapping) and "rid" in result:
        status = result["status"]
        served = (result.get("modelVersion") or {}).get("modelVersionRid")
        parts.append("<h2>Deployment</h2>")
        parts.append(
            _table(
                "deployment",
                ["state", "ready", "serves"],
                [[_e(status.get("state")), _e(status.get("isReady")), _e(served)]],
            )
        )
    return parts
