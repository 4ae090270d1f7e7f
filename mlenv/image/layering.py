"""Which packages share an image layer (the daemonless builder's layer rule).

Layers by owning package, as apko does, with a rule that depends on each
package alone wherever the budget allows, so that a package locked by two
environments yields the same layer blob in both:

1. Every locked package is a *unit*; its size is the byte size of its locked
   artifact (a function of the artifact's sha256, known before anything is
   installed, the same on every machine).
2. A unit of at least OWN_LAYER_MIN_BYTES (1 MiB) gets a layer of its own;
   smaller ones share one layer per manager (`conda-rest`, `pypi-rest`).
3. Budget: at most `max_layers` environment layers (MAX_ENV_LAYERS = 16 by
   default, and fewer when the base already has many, so that the image stays
   under MAX_TOTAL_LAYERS = 100, well below the ~120 at which overlay mounts
   start to fail). When there are more candidates, the smallest own-layer units
   (ties by id) move into their manager's shared layer until the count fits.
4. Order (it decides which file wins if two packages write the same path):
   conda layers (own layers by name, then conda-rest), then PyPI (pypi-rest, then
   own layers of transitive dependencies by name, then those of the packages the
   spec names itself, which change most often). Nothing depends on the order of
   packages in the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OWN_LAYER_MIN_BYTES = 1 << 20
MAX_ENV_LAYERS = 16
MAX_TOTAL_LAYERS = 100


@dataclass(frozen=True)
class Unit:
    id: str  # "conda/<name>" | "pypi/<normalized name>"
    manager: str
    name: str
    size: int
    direct: bool = False  # the spec names it (PyPI): ordered last


@dataclass
class PlannedLayer:
    id: str  # the unit id for an own layer, else "conda-rest" / "pypi-rest"
    manager: str
    units: list[str] = field(default_factory=list)


def budget(base_layers: int, *, max_layers: int = MAX_ENV_LAYERS, extra: int = 3) -> int:
    """Environment layers allowed on a base with base_layers layers (extra: the
    skeleton, unowned and metadata layers)."""
    return max(0, min(max_layers, MAX_TOTAL_LAYERS - base_layers - extra))


def plan(
    units: list[Unit], *, max_layers: int = MAX_ENV_LAYERS, min_bytes: int = OWN_LAYER_MIN_BYTES
) -> list[PlannedLayer]:
    if max_layers < 2 and len({u.manager for u in units}) > 1:
        raise ValueError("the layer budget is too small for this environment")
    ordered = sorted(units, key=lambda u: u.id)
    own = [u for u in ordered if u.size >= min_bytes]
    rest = [u for u in ordered if u.size < min_bytes]

    def count() -> int:
        return len(own) + len({u.manager for u in rest})

    while own and count() > max(max_layers, 1):
        smallest = min(own, key=lambda u: (u.size, u.id))
        own.remove(smallest)
        rest.append(smallest)
    layers: list[PlannedLayer] = []
    for manager in ("conda", "pypi"):
        mine = sorted((u for u in own if u.manager == manager), key=lambda u: (u.direct, u.name, u.id))
        shared = sorted(u.id for u in rest if u.manager == manager)
        own_layers = [PlannedLayer(u.id, manager, [u.id]) for u in mine]
        rest_layer = [PlannedLayer(f"{manager}-rest", manager, shared)] if shared else []
        layers += own_layers + rest_layer if manager == "conda" else rest_layer + own_layers
    return layers
