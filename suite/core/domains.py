"""Domains: named regions, bounding boxes and the globe, always as whole mascons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twsbench.core.errors import ConfigError

#: Named domains as (south, north, west, east) in degrees; ``None`` is the whole globe.
NAMED: dict[str, tuple[float, float, float, float] | None] = {
    # Monsoon Asia: Indus–Ganges–Brahmaputra with its groundwater depletion, the Himalaya,
    # Karakoram and Tien Shan glaciers, the Tibetan Plateau, the Arabian Sea and Bay of Bengal.
    "south-asia": (0.0, 45.0, 55.0, 105.0),
    "global": None,
}
DEFAULT = "south-asia"


@dataclass(frozen=True)
class Domain:
    """A region of the globe. A mascon belongs to it when its land centroid lies inside.

    ``west > east`` describes a box across the antimeridian.
    """

    name: str
    bbox: tuple[float, float, float, float] | None  # (south, north, west, east); None = globe

    @property
    def is_global(self) -> bool:
        return self.bbox is None

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Whether points (lon in any convention) lie inside the domain."""
        lat = np.asarray(lat, dtype=float)
        lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
        if self.bbox is None:
            return np.ones(np.broadcast(lat, lon).shape, dtype=bool)
        south, north, west, east = self.bbox
        in_lat = (lat >= south) & (lat <= north)
        in_lon = (lon >= west) & (lon <= east) if west <= east else (lon >= west) | (lon <= east)
        return in_lat & in_lon

    def describe(self) -> str:
        if self.bbox is None:
            return f"{self.name} (the globe)"
        s, n, w, e = self.bbox
        return f"{self.name} ({s:g}..{n:g}°N, {w:g}..{e:g}°E)"


def get_domain(name: str | None = None, bbox: tuple[float, float, float, float] | None = None
               ) -> Domain:
    """A named domain, or a bounding box ``(south, north, west, east)``.

    Raises
    ------
    ConfigError
        For an unknown name or a box that makes no sense.
    """
    if bbox is not None:
        south, north, west, east = (float(v) for v in bbox)
        if not (-90 <= south < north <= 90):
            raise ConfigError(f"[domain] bbox: expected -90 <= south < north <= 90, found "
                              f"south={south:g} north={north:g}")
        if not (-180 <= west <= 360 and -180 <= east <= 360) or west == east:
            raise ConfigError(f"[domain] bbox: expected distinct west and east in -180..360, found "
                              f"west={west:g} east={east:g}")
        wrap = lambda v: (v + 180.0) % 360.0 - 180.0 if v != 180.0 else 180.0  # noqa: E731
        return Domain(name=name or f"bbox_{south:g}_{north:g}_{west:g}_{east:g}",
                      bbox=(south, north, wrap(west), wrap(east)))
    name = name or DEFAULT
    if name not in NAMED:
        raise ConfigError(f"[domain] name: expected one of {', '.join(sorted(NAMED))} or a bbox, "
                          f"found {name!r}")
    return Domain(name=name, bbox=NAMED[name])
