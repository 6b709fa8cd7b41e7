"""A `juju status`-like table of a sandbox model."""

from __future__ import annotations

import time

import ops

from sandbox.agent import JUJU_VERSION
from sandbox.state import ModelState


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def render(model: ModelState, pod_ready: dict[str, bool]) -> str:
    """`juju status`, with each unit's pod readiness (Kubernetes' Ready condition), restarts and revision.

    Each application's StatefulSet shows its rolling-update partition and revisions (as
    `kubectl get statefulset` and its status would).
    """
    lines = _table(
        [
            ["Model", "Controller", "Cloud/Region", "Version", "Timestamp"],
            [model.name, "sandbox", "sandbox/local", JUJU_VERSION, time.strftime("%H:%M:%SZ", time.gmtime())],
        ]
    )
    apps = [["App", "Version", "Status", "Scale", "Charm", "Message"]]
    for app in model.apps.values():
        versions = {model.units[u].workload_version for u in app.units} - {""}
        statuses = [model.units[u].workload_status for u in app.units]
        status = app.status if app.status.name != "unknown" else _worst(statuses)
        apps.append(
            [
                app.name,
                ",".join(sorted(versions)),
                status.name if status else "unknown",
                str(len(model.alive_units(app.name))),
                app.charm.name,
                status.message if status else "",
            ]
        )
    lines += ["", *_table(apps)]
    sets = [["StatefulSet", "Replicas", "Ready", "Updated", "Partition", "Current revision", "Update revision"]]
    for app in model.apps.values():
        pods = [model.units[u] for u in app.units]
        sets.append(
            [
                app.name,
                str(len(model.alive_units(app.name))),
                str(sum(1 for u in pods if pod_ready.get(u.name))),
                str(sum(1 for u in pods if u.revision == app.update_revision)),
                str(app.partition),
                app.current_revision,
                app.update_revision,
            ]
        )
    if len(sets) > 1:
        lines += ["", *_table(sets)]
    units = [["Unit", "Workload", "Agent", "Address", "Ports", "Pod", "Revision", "Message"]]
    for app in model.apps.values():
        for unit_name in app.units:
            unit = model.units[unit_name]
            leader = "*" if app.leader == unit_name else ""
            ports = ",".join(
                f"{p.port}/{p.protocol}" if p.port else p.protocol
                for p in sorted(unit.opened_ports, key=lambda p: (p.protocol, p.port or 0))
            )
            message = unit.agent_message if unit.error else unit.workload_status.message
            workload = "error" if unit.error else unit.workload_status.name
            agent = "dying" if unit.dying else unit.agent_status
            pod = "ready" if pod_ready.get(unit_name) else "not ready"
            if unit.restarts:
                pod += f" ({unit.restarts} restart{'s' if unit.restarts != 1 else ''})"
            if unit.pod.network_cut:
                pod += " (network cut)"
            units.append([unit_name + leader, workload, agent, unit.pod.address, ports, pod, unit.revision, message])
    lines += ["", *_table(units)]
    relations = list(model.relations.values())
    if relations:
        rows = [["Integration provider", "Requirer", "Interface", "Type"]]
        for relation in relations:
            if relation.is_peer:
                ((app, endpoint),) = relation.endpoints
                rows.append([f"{app}:{endpoint}", f"{app}:{endpoint}", relation.interface, "peer"])
                continue
            ordered = sorted(
                relation.endpoints, key=lambda e: model.apps[e[0]].charm.endpoints[e[1]].role != "provides"
            )
            rows.append([f"{a}:{e}" for a, e in ordered] + [relation.interface, "regular"])
        lines += ["", *_table(rows)]
    return "\n".join(lines) + "\n"


_SEVERITY = ["error", "blocked", "maintenance", "waiting", "active", "unknown"]


def _worst(statuses: list[ops.StatusBase]) -> ops.StatusBase | None:
    if not statuses:
        return None
    return min(statuses, key=lambda s: _SEVERITY.index(s.name) if s.name in _SEVERITY else 0)
