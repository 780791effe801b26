"""A small dotted-path syntax to pick a number out of a JSON payload, as home-energy systems
publish them: `ENERGY.Power.0` (Tasmota), `em:0.a_act_power` (Shelly Pro 3EM),
`emeters[1].power` (brackets work as well), `$` for a payload that is the number itself."""

from __future__ import annotations

import math
import re
from typing import Any

ROOT = "$"
_INDEX = re.compile(r"\[(\d+)\]")
MAX_SEGMENTS = 16


class PathError(ValueError):
    """The path does not lead to a number in this payload; `str(e)` says where it stopped."""


def parse(path: str) -> tuple[str, ...]:
    """The segments of `path`, or ValueError when it is not a path (empty segments, too deep)."""
    path = path.strip()
    if path == ROOT:
        return ()
    if path.startswith(ROOT + "."):
        path = path[2:]
    segments = tuple(_INDEX.sub(r".\1", path).split("."))
    if not path or any(s == "" for s in segments) or len(segments) > MAX_SEGMENTS:
        raise ValueError(path)
    return segments


def pick(payload: Any, segments: tuple[str, ...]) -> float:
    """The number at `segments` in `payload` (numbers given as text are read too)."""
    value = payload
    for depth, segment in enumerate(segments):
        if isinstance(value, dict):
            if segment not in value:
                raise PathError(f"no key {'.'.join(segments[: depth + 1])}")
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                raise PathError(f"no index {'.'.join(segments[: depth + 1])}")
            value = value[index]
        else:
            raise PathError(f"{'.'.join(segments[:depth]) or ROOT} is not an object or list")
    if isinstance(value, bool) or value is None:
        raise PathError(f"{'.'.join(segments) or ROOT} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PathError(f"{'.'.join(segments) or ROOT} is not a number") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise PathError(f"{'.'.join(segments) or ROOT} is not a finite number")
    return float(value)
