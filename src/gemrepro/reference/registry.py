"""Reference methods by name, as chapters, the CLI and cache keys spell them."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from gemrepro.reference.method import ReferenceMethod
from gemrepro.reference.pbe0 import PBE0
from gemrepro.reference.xtb import GFN2xTB

_CLASSES: dict[str, type[ReferenceMethod]] = {"gfn2-xtb": GFN2xTB, "pbe0": PBE0}
METHODS: tuple[str, ...] = tuple(_CLASSES)


def get_method(name: str, **options) -> ReferenceMethod:
    """The method called ``name`` with its settings overridden by ``options``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _CLASSES:
        raise ValueError(f"unknown reference method {name!r}: expected one of {', '.join(METHODS)}")
    cls = _CLASSES[key]
    known = [f.name for f in dataclasses.fields(cast(Any, cls))]  # every method is a dataclass
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {key}: expected {', '.join(known)}")
    return cls(**options)
