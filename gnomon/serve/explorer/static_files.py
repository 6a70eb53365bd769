"""The explorer's script files and plotly.js, served by ``gnomon serve`` itself.

Every script a page runs comes from here, never from a CDN and never inline (the pages work
with no internet and under a ``script-src 'self'`` content security policy).

plotly.js comes as the smallest of its official partial bundles that draws a page's figures
(Chromium runs the whole file on every page: 0.2-0.5 s on a 2-CPU machine): ``basic`` (1.2 MB:
scatter, the binary hull), ``cartesian`` (1.5 MB: scatterternary too, the ternary hull) or
``gl3d`` (1.8 MB: scatter, scatter3d and mesh3d, the quaternary hull and a phase page's
structure and XRD pattern). They are the npm packages ``plotly.js-<name>-dist-min`` that
``make install`` puts into ``vendor/node_modules`` (``npm ci`` of ``vendor/package.json``,
pinned to the plotly.js version of the ``plotly`` wheel). A bundle missing (no npm where gnomon
was installed) or of another version than the wheel's is passed over, and the server logs that
once: a page then loads the next larger one that draws its figures, or else the full plotly.js
the wheel ships (``plotly/package_data/plotly.min.js``, 4.8 MB). Each file's URL carries its
version, so browsers may keep it for a long time and fetch it once per plotly upgrade.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi.responses import FileResponse, Response
from plotly.offline import get_plotlyjs_version

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: where ``npm ci`` installs the partial plotly.js bundles (vendor/package.json)
VENDOR = Path(__file__).resolve().parent / "vendor" / "node_modules"
#: the scripts a page may load, by the name in their URL
SCRIPTS = ("plots.js", "facts.js")
_LONG = "public, max-age=31536000, immutable"
_SHORT = "public, max-age=300"


@dataclass(frozen=True)
class Bundle:
    """A partial plotly.js bundle: its npm package, its file and the trace types it draws."""

    name: str
    package: str
    file: str
    traces: frozenset[str]

    def path(self) -> Path:
        return VENDOR / self.package / self.file

    def version(self) -> str | None:
        """The installed package's version; None where it is not installed."""
        try:
            meta = json.loads((VENDOR / self.package / "package.json").read_text())
        except (OSError, ValueError):
            return None
        return meta.get("version") if self.path().is_file() else None


#: the partial bundles, smallest first (their README's list of trace modules)
BUNDLES = (
    Bundle("basic", "plotly.js-basic-dist-min", "plotly-basic.min.js",
           frozenset({"bar", "pie", "scatter"})),
    Bundle("cartesian", "plotly.js-cartesian-dist-min", "plotly-cartesian.min.js", frozenset({
        "bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
        "image", "pie", "scatter", "scatterternary", "violin"})),
    Bundle("gl3d", "plotly.js-gl3d-dist-min", "plotly-gl3d.min.js", frozenset({
        "cone", "isosurface", "mesh3d", "scatter", "scatter3d", "streamtube", "surface",
        "volume"})),
)


def plotly_name() -> str:
    """``plotly-4.1.1.min.js``: the versioned file name of the full plotly.js."""
    return f"plotly-{get_plotlyjs_version()}.min.js"


def plotly_path() -> Path:
    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def bundle_name(bundle: Bundle) -> str:
    """``plotly-cartesian-4.1.1.min.js``: the versioned file name of a partial bundle."""
    return f"plotly-{bundle.name}-{get_plotlyjs_version()}.min.js"


@cache
def installed() -> tuple[Bundle, ...]:
    """The partial bundles installed at the wheel's plotly.js version (logged once where one
    is not: its pages load a larger one, or the full plotly.js)."""
    want = get_plotlyjs_version()
    found = tuple(b for b in BUNDLES if b.version() == want)
    if len(found) < len(BUNDLES):
        missing = ", ".join(f"{b.package}@{want}" for b in BUNDLES if b not in found)
        log.warning("explorer: %s not installed in %s (make install runs npm ci there); "
                    "its pages load a larger plotly.js (the full one is 4.8 MB: slower)",
                    missing, VENDOR)
    return found


def plotly_script(traces: Iterable[str]) -> str:
    """The file name of the smallest installed plotly.js that draws every trace type in
    ``traces`` (e.g. ``{"scatterternary"}``): a partial bundle, or the full plotly.js."""
    need = set(traces)
    for bundle in installed():
        if need <= bundle.traces:
            return bundle_name(bundle)
    return plotly_name()


def _plotly_files() -> dict[str, Path]:
    """Every plotly.js file served, by its versioned name: the full one and each installed
    partial bundle."""
    return {plotly_name(): plotly_path(), **{bundle_name(b): b.path() for b in installed()}}


def script(name: str) -> Response:
    """``/explorer/assets/{name}``: one of :data:`SCRIPTS`, or a plotly.js by its versioned
    name; any other name is a 404 (nothing but these files is ever read)."""
    plotly = _plotly_files()
    if name in plotly:
        path, cache_control = plotly[name], _LONG
    elif name in SCRIPTS:
        path, cache_control = STATIC / name, _SHORT
    else:
        return Response(f"no explorer asset {name!r}", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": cache_control})
