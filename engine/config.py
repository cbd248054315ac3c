"""Validated, frozen configuration dataclasses.

A config field declares its allowed values once, in its dataclass metadata, and every config
checks all of its fields on construction::

    @dataclass(frozen=True)
    class Foo(Config):
        dt: float = bounded(0.1, 0.0, 1.0, lo_open=True, units="ms", doc="time step")
        model: str = choice("coba", ("coba", "cuba"), doc="network model")

A bad value raises ``ValueError`` naming the field, the value and the allowed range, e.g.
``dt=-1.0 is out of range: allowed (0, 1] ms``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["Config", "bounded", "choice", "integer", "flag"]


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def bounded(
    default: float,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    units: str = "",
    doc: str = "",
) -> Any:
    """A finite real field within ``[lo, hi]`` (ends open on request)."""
    spec = {"kind": "real", "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}
    return field(default=default, metadata={"spec": spec, "units": units, "doc": doc})


def integer(default: int, lo: int, hi: int, *, units: str = "", doc: str = "") -> Any:
    """An integer field within ``[lo, hi]``."""
    spec = {"kind": "int", "lo": lo, "hi": hi, "lo_open": False, "hi_open": False}
    return field(default=default, metadata={"spec": spec, "units": units, "doc": doc})


def choice(default: Any, options: tuple, *, doc: str = "") -> Any:
    """A field that takes one of ``options``."""
    return field(default=default, metadata={"spec": {"kind": "choice", "options": options}, "doc": doc})


def flag(default: bool, *, doc: str = "") -> Any:
    """A boolean field."""
    return field(default=default, metadata={"spec": {"kind": "bool"}, "doc": doc})


def _range_text(spec: dict, units: str) -> str:
    lo, hi = spec["lo"], spec["hi"]
    left = "(" if spec["lo_open"] or lo == -math.inf else "["
    right = ")" if spec["hi_open"] or hi == math.inf else "]"
    text = f"{left}{_fmt(lo)}, {_fmt(hi)}{right}"
    return f"{text} {units}".rstrip()


def check_value(name: str, value: Any, spec: dict, units: str = "") -> Any:
    """Validate (and normalise) one value against its spec; raise ``ValueError`` if bad."""
    kind = spec["kind"]
    if kind == "choice":
        if value not in spec["options"]:
            allowed = ", ".join(str(o) for o in spec["options"])
            raise ValueError(f"{name}={value!r} is not allowed: choose one of {allowed}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} is not allowed: must be true or false")
        return value
    allowed = _range_text(spec, units)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}={value!r} is not a number: allowed {allowed}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{name}={value!r} is not an integer: allowed {allowed}")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name}={value} is not finite: allowed {allowed}")
    lo, hi = spec["lo"], spec["hi"]
    too_low = value <= lo if spec["lo_open"] else value < lo
    too_high = value >= hi if spec["hi_open"] else value > hi
    if too_low or too_high:
        raise ValueError(f"{name}={_fmt(value)} is out of range: allowed {allowed}")
    return value


def parse_text(name: str, text: str, spec: dict) -> Any:
    """Turn command-line text into a value of the field's kind (not yet range-checked)."""
    kind = spec["kind"]
    try:
        if kind == "int":
            return int(text) if text.strip().lstrip("+-").isdigit() else float(text)
        if kind == "real":
            return float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if kind == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={text!r} is not allowed: must be true or false")
    for option in spec["options"]:
        if str(option) == text:
            return option
    return text


@dataclass(frozen=True)
class Config:
    """Base of every config: validates declared fields, then calls :meth:`check`."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            value = check_value(f.name, getattr(self, f.name), spec, f.metadata.get("units", ""))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field checks; override and raise ``ValueError`` naming the fields."""

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied; unknown names raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}: known are {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def replace_text(self, **texts: str) -> Self:
        """Like :meth:`replace`, parsing each value from text (``--set name=value``)."""
        specs = {f.name: f.metadata.get("spec") for f in dataclasses.fields(self)}
        changes = {}
        for name, text in texts.items():
            if name not in specs:
                raise ValueError(f"unknown parameter {name!r}: known are {', '.join(sorted(specs))}")
            spec = specs[name]
            changes[name] = parse_text(name, text, spec) if spec else text
        return self.replace(**changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        """Rebuild (and validate) a config from :meth:`to_dict` output; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def describe(cls) -> list[dict]:
        """One row per field: name, default, allowed values, units, doc (for help and UIs)."""
        rows = []
        for f in dataclasses.fields(cls):
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            units = f.metadata.get("units", "")
            if spec["kind"] in ("real", "int"):
                allowed = _range_text(spec, units)
            elif spec["kind"] == "choice":
                allowed = " | ".join(str(o) for o in spec["options"])
            else:
                allowed = "true | false"
            rows.append(
                {
                    "name": f.name,
                    "default": f.default,
                    "allowed": allowed,
                    "units": units,
                    "doc": f.metadata.get("doc", ""),
                }
            )
        return rows
