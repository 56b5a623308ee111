"""Flow runs whose processes died are marked Crashed, with Prefect's own mechanism.

A flow-run process that is SIGKILLed (with its worker, its machine, its container) cannot report its
end, so the server shows it Running forever. Prefect 3 handles this with flow-run heartbeats and an
automation ("detect zombie flows" in Prefect's docs): every running flow run emits a
``prefect.flow-run.heartbeat`` event each ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (180 by
default in 3.9, at least 30), and a proactive automation changes a run to Crashed when no further
event about it arrives within ``within`` seconds of its last heartbeat.

With ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30`` on the worker (or ``serve``) and ``within`` 90 s, a
killed run is Crashed about two minutes after its last heartbeat. Runs that died before the automation
existed never get another heartbeat to start the clock: ``clear`` marks those.

    python -m flows.zombies install [--within 90]       # create (or replace) the automation
    python -m flows.zombies clear --older-than 600      # Running runs with no heartbeat for 10 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

AUTOMATION_NAME = "medpref: crash zombie flow runs"
HEARTBEAT_SECONDS = 30  # what the docs set PREFECT_FLOWS_HEARTBEAT_FREQUENCY to on workers
WITHIN_SECONDS = 90  # three missed heartbeats


def zombie_automation(within_seconds: int = WITHIN_SECONDS):
    """After each heartbeat of a flow run, expect another event about that run within ``within``
    seconds (a heartbeat or any state change); otherwise mark it Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=AUTOMATION_NAME,
        description="Flow runs that stopped sending heartbeats (their process died) become Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=within_seconds),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {within_seconds} s: the flow run's process is gone")],
    )


def install(within_seconds: int = WITHIN_SECONDS) -> str:
    """Create the automation, replacing one of the same name (so rerunning it changes ``within``)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(old.id)
    return str(zombie_automation(within_seconds).create().id)


def clear(older_than_seconds: int, dry_run: bool = False) -> list[str]:
    """Mark Crashed every Running flow run whose last heartbeat (or, without one, its start) is older
    than ``older_than_seconds``: runs that died before the automation was installed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    now = dt.datetime.now(dt.UTC)
    cleared = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
        for fr in runs:
            last = _last_heartbeat(client, fr.id) or fr.start_time or fr.created
            if last is None or (now - last).total_seconds() < older_than_seconds:
                continue
            cleared.append(f"{fr.name} ({fr.id}), last seen {last:%Y-%m-%d %H:%M:%S} UTC")
            if not dry_run:
                client.set_flow_run_state(fr.id, Crashed(message=f"no sign of life for {older_than_seconds} s "
                                                                 "(cleared by python -m flows.zombies clear)"),
                                          force=True)
    return cleared


def _last_heartbeat(client, flow_run_id) -> dt.datetime | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    try:
        page = client.read_events(filter=EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])), limit=1)
    except Exception:  # noqa: BLE001 - an older server without the events API: fall back to the start time
        return None
    events = getattr(page, "events", page) or []
    return max((e.occurred for e in events), default=None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.zombies", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="create (or replace) the zombie automation on the server")
    inst.add_argument("--within", type=int, default=WITHIN_SECONDS, help="seconds without a heartbeat")
    clr = sub.add_parser("clear", help="mark old Running runs without heartbeats Crashed")
    clr.add_argument("--older-than", type=int, default=600, help="seconds since the last heartbeat")
    clr.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "install":
        print(f"automation {AUTOMATION_NAME!r} installed ({install(args.within)}): a flow run with no heartbeat "
              f"for {args.within} s becomes Crashed; set PREFECT_FLOWS_HEARTBEAT_FREQUENCY={HEARTBEAT_SECONDS} "
              "on workers")
        return 0
    cleared = clear(args.older_than, args.dry_run)
    for line in cleared:
        print(("would mark Crashed: " if args.dry_run else "marked Crashed: ") + line)
    print(f"{len(cleared)} flow run(s) {'to clear' if args.dry_run else 'cleared'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
