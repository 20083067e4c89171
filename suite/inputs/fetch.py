"""``twsbench fetch``: build the real download requests for the three sources.

The requests follow the providers' documented clients (earthaccess for NASA Earthdata, cdsapi
for the Copernicus Climate Data Store). Nothing here runs in the default benchmark: the twin
world needs no download. Credentials are read only by the providers' clients and never
appear in messages: :func:`redact` removes every secret it can find from any text the suite
prints about a fetch.
"""

from __future__ import annotations

import netrc
import os
import re
from pathlib import Path
from typing import Any

from twsbench.core.errors import TwsbenchError

GRACE_SHORT_NAME = "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4"
EARTHDATA_HOST = "urs.earthdata.nasa.gov"
ERA5_DATASET = "reanalysis-era5-single-levels-monthly-means"
ERA5_VARIABLES = {
    "avgua": ["volumetric_soil_water_layer_1", "volumetric_soil_water_layer_2",
              "volumetric_soil_water_layer_3", "volumetric_soil_water_layer_4", "snow_depth",
              "skin_reservoir_content", "2m_temperature"],
    "avgad": ["total_precipitation", "evaporation", "runoff"],
}
WGHM_SOURCES = (
    "WaterGAP 2.2e standard output (GFZ Data Services / PANGAEA): "
    "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc",
    "ISIMIP3a OutputData, water_global, WaterGAP2-2e: "
    "watergap2-2e_gswp3-w5e5_obsclim_histsoc_default_tws_global_monthly_1901_2019.nc",
)


class FetchError(TwsbenchError):
    """A fetch that cannot go ahead (no account, no client, no network)."""


def secrets() -> list[str]:
    """Every credential value this machine holds for the providers (for redaction)."""
    found = [os.environ.get(k, "") for k in ("EARTHDATA_PASSWORD", "EARTHDATA_TOKEN",
                                             "CDSAPI_KEY", "EARTHDATA_USERNAME")]
    try:
        auth = netrc.netrc().authenticators(EARTHDATA_HOST)
        if auth:
            found += [auth[0], auth[2]]
    except (OSError, netrc.NetrcParseError):
        pass
    rc = Path(os.environ.get("CDSAPI_RC", Path.home() / ".cdsapirc"))
    if rc.exists():
        for line in rc.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "key" and value.strip():
                found.append(value.strip())
    return [s for s in found if len(s) >= 4]


def redact(text: str) -> str:
    """``text`` with every known credential (and anything after key=/token=) replaced."""
    for secret in sorted(secrets(), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return re.sub(r"(?i)(key|token|password)([=:]\s*)\S+", r"\1\2[redacted]", text)


def _has_earthdata_login() -> bool:
    if os.environ.get("EARTHDATA_TOKEN") or (os.environ.get("EARTHDATA_USERNAME")
                                            and os.environ.get("EARTHDATA_PASSWORD")):
        return True
    try:
        return netrc.netrc().authenticators(EARTHDATA_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _has_cds_login() -> bool:
    if os.environ.get("CDSAPI_URL") and os.environ.get("CDSAPI_KEY"):
        return True
    return Path(os.environ.get("CDSAPI_RC", Path.home() / ".cdsapirc")).exists()


def grace_request(first: int, last: int) -> dict[str, Any]:
    return {"short_name": GRACE_SHORT_NAME, "temporal": (f"{first}-01-01", f"{last}-12-31")}


def era5_requests(first: int, last: int, bbox: tuple[float, float, float, float] | None
                  ) -> dict[str, dict[str, Any]]:
    """One CDS request per stream (the CDS zips mixed streams otherwise)."""
    base = {"product_type": ["monthly_averaged_reanalysis"],
            "year": [str(y) for y in range(first, last + 1)],
            "month": [f"{m:02d}" for m in range(1, 13)], "time": ["00:00"],
            "data_format": "netcdf", "download_format": "unarchived"}
    out = {}
    for stream, variables in ERA5_VARIABLES.items():
        request: dict[str, Any] = {**base, "variable": variables}
        if bbox is not None:
            south, north, west, east = bbox
            request["area"] = [north, west, south, east]
        out[stream] = request
    return out


def fetch(source: str, out: Path, first: int = 2002, last: int = 2022,
          bbox: tuple[float, float, float, float] | None = None, dry_run: bool = False
          ) -> dict[str, Any]:
    """Build (and unless ``dry_run``, send) the requests for ``source``.

    Raises
    ------
    FetchError
        No account, no client library, or no network; the message names what is missing and
        never a credential.
    """
    out = Path(out)
    if source == "grace":
        request = grace_request(first, last)
        if dry_run:
            return {"earthaccess.search_data": request}
        if not _has_earthdata_login():
            raise FetchError(f"grace: expected NASA Earthdata credentials (~/.netrc machine "
                             f"{EARTHDATA_HOST}, or EARTHDATA_USERNAME/EARTHDATA_PASSWORD, or "
                             "EARTHDATA_TOKEN), found none")
        try:
            import earthaccess
        except ImportError as err:
            raise FetchError("grace: expected the earthaccess package (pip install "
                             "earthaccess), found it missing") from err
        try:
            earthaccess.login(strategy="environment" if os.environ.get(
                "EARTHDATA_USERNAME") else "netrc")
            results = earthaccess.search_data(**request)
            out.mkdir(parents=True, exist_ok=True)
            files = earthaccess.download(results, str(out))
        except Exception as err:  # network, authentication, server
            raise FetchError(redact(f"grace: expected a reachable NASA Earthdata, found "
                                    f"{type(err).__name__}: {err}")) from None
        return {"files": [str(f) for f in files]}
    if source == "era5":
        requests = era5_requests(first, last, bbox)
        if dry_run:
            return {f"cdsapi.retrieve({ERA5_DATASET!r})": requests}
        if not _has_cds_login():
            raise FetchError("era5: expected a CDS account (~/.cdsapirc, or CDSAPI_URL and "
                             "CDSAPI_KEY), found none")
        try:
            import cdsapi
        except ImportError as err:
            raise FetchError("era5: expected the cdsapi package (pip install cdsapi), found "
                             "it missing") from err
        out.mkdir(parents=True, exist_ok=True)
        files = []
        try:
            client = cdsapi.Client(quiet=True)
            for stream, request in requests.items():
                target = out / f"data_stream-moda_stepType-{stream}.nc"
                client.retrieve(ERA5_DATASET, request, str(target))
                files.append(str(target))
        except Exception as err:
            raise FetchError(redact(f"era5: expected a reachable Climate Data Store, found "
                                    f"{type(err).__name__}: {err}")) from None
        return {"files": files}
    if source == "wghm":
        if dry_run:
            return {"sources": list(WGHM_SOURCES)}
        raise FetchError("wghm: expected a manual download (no API): " + "; or ".join(
            WGHM_SOURCES))
    raise FetchError(f"fetch: expected grace, era5 or wghm, found {source!r}")
