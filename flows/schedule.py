"""Helpers the scheduled flows share."""

from __future__ import annotations

import datetime as dt


def scheduled_date() -> str:
    """The run's scheduled UTC date (today outside a flow run), for output folders like `{date}`."""
    try:
        from prefect.runtime import flow_run

        when = flow_run.scheduled_start_time
    except Exception:  # noqa: BLE001 - outside a flow run
        when = None
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")
