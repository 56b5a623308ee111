"""From the anatomy of a finding ("left lower zone") to boxes on the image, via the lung fields.

A location is a dict ``{"laterality": "left"|"right"|"bilateral"|None, "zone": ZONE|None,
"diseased_sides": [...]}`` in the patient's frame. The patient's right is the image's LEFT on PA/AP
views, which ``LungFields`` already encodes (``lungs.right`` is the box on the image's left).

Zones are fractions of a lung box; "medial" is toward the midline, "lateral" away from it. Boxes
reaching the diaphragm or the apex are stretched a little beyond the fitted box because the fit
stops where the lung is darkest, and an effusion or consolidation is exactly where it is not.
"""

from __future__ import annotations

from collections.abc import Iterable

from corruptors.lungs import LungFields

LATERALITIES = ("left", "right", "bilateral")
LUNG_ZONES = ("upper", "middle", "lower", "apex", "base", "hilum", "costophrenic", "retrocardiac", "lung")
CENTRAL_ZONES = ("heart", "mediastinum")  # between the lungs; laterality does not apply
ZONES = LUNG_ZONES + CENTRAL_ZONES

# zone -> (medial-lateral fractions, top-bottom fractions) of the lung box; may reach beyond [0, 1]
_ZONE_FRACTIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "lung": ((0.0, 1.0), (-0.03, 1.08)),
    "upper": ((0.0, 1.0), (-0.05, 0.36)),
    "middle": ((0.0, 1.0), (0.30, 0.70)),
    "lower": ((0.0, 1.0), (0.64, 1.10)),
    "apex": ((0.0, 1.0), (-0.08, 0.25)),
    "base": ((0.0, 1.0), (0.70, 1.12)),
    "hilum": ((-0.10, 0.50), (0.28, 0.65)),
    "costophrenic": ((0.45, 1.05), (0.72, 1.12)),
    "retrocardiac": ((-0.30, 0.60), (0.50, 1.08)),
}


def _zone_box(lungs: LungFields, side: str, zone: str) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = lungs.box(side)
    w, h = x2 - x1, y2 - y1
    (m0, m1), (t0, t1) = _ZONE_FRACTIONS[zone]
    if side == "right":  # image left: medial edge is x2, lateral edge is x1
        bx1, bx2 = x2 - m1 * w, x2 - m0 * w
    else:  # image right: medial edge is x1
        bx1, bx2 = x1 + m0 * w, x1 + m1 * w
    return _clip((bx1, y1 + t0 * h, bx2, y1 + t1 * h), lungs)


def _central_box(lungs: LungFields, zone: str) -> tuple[int, int, int, int]:
    rx1, ry1, rx2, ry2 = lungs.right  # image left
    lx1, ly1, lx2, ly2 = lungs.left  # image right
    top, bottom = min(ry1, ly1), max(ry2, ly2)
    h = bottom - top
    if zone == "heart":  # the heart bulges into the patient's left lung field
        return _clip(
            (rx2 - 0.25 * (rx2 - rx1), top + 0.45 * h, lx1 + 0.45 * (lx2 - lx1), bottom + 0.05 * h), lungs
        )
    return _clip((rx2 - 0.1 * (rx2 - rx1), top - 0.05 * h, lx1 + 0.1 * (lx2 - lx1), top + 0.7 * h), lungs)


def _clip(box, lungs: LungFields) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (
        max(0, int(round(x1))), max(0, int(round(y1))),
        min(lungs.width, int(round(x2))), min(lungs.height, int(round(y2))),
    )  # fmt: skip


def validate_location(location: dict) -> tuple[str | None, str]:
    """(laterality, zone) of a location dict; ValueError naming the field for an unknown value."""
    if not isinstance(location, dict):
        raise ValueError(f"a location must be a dict, got {type(location).__name__}")
    laterality = location.get("laterality")
    zone = location.get("zone") or "lung"
    if zone not in ZONES:
        raise ValueError(f"location field 'zone': unknown zone {zone!r}; valid zones: {', '.join(ZONES)}")
    if laterality is not None and laterality not in LATERALITIES:
        raise ValueError(
            f"location field 'laterality': unknown value {laterality!r}; valid: {', '.join(LATERALITIES)}, None"
        )
    sides = location.get("diseased_sides") or []
    if not isinstance(sides, (list, tuple, set, frozenset)) or any(s not in LATERALITIES for s in sides):
        raise ValueError(
            f"location field 'diseased_sides': must list sides from {', '.join(LATERALITIES)}, got {sides!r}"
        )
    return laterality, zone


def location_boxes(location: dict, lungs: LungFields) -> list[tuple[int, int, int, int]]:
    """The boxes (image pixels) covering one location; raises ValueError on an unknown value."""
    laterality, zone = validate_location(location)
    if zone in CENTRAL_ZONES:
        return [_central_box(lungs, zone)]
    if zone == "retrocardiac":  # behind the heart: the patient's left lower lobe by definition
        sides = ["left"]
    elif laterality in ("left", "right"):
        sides = [laterality]
    else:
        sides = ["right", "left"]
    boxes = [_zone_box(lungs, side, zone) for side in sides]
    return [b for b in boxes if b[2] > b[0] and b[3] > b[1]]


def diseased_sides(locations: Iterable[dict]) -> frozenset[str]:
    """Patient sides the report marks abnormal: every location's ``diseased_sides`` and laterality."""
    sides: set[str] = set()
    for loc in locations:
        for s in loc.get("diseased_sides") or ():
            if s == "bilateral":
                sides.update(("left", "right"))
            elif s in ("left", "right"):
                sides.add(s)
        lat = loc.get("laterality")
        if lat == "bilateral":
            sides.update(("left", "right"))
        elif lat in ("left", "right"):
            sides.add(lat)
    return frozenset(sides)
