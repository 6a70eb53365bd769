"""The explorer's script files and plotly.js, served by ``gnomon serve`` itself.

Every script a page runs comes from here, never from a CDN and never inline (the pages work
with no internet and under a ``script-src 'self'`` content security policy). plotly.js is the
copy the ``plotly`` wheel ships (``plotly/package_data/plotly.min.js``); its URL carries its
version, so browsers may keep it for a long time and fetch it once per plotly upgrade.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi.responses import FileResponse, Response
from plotly.offline import get_plotlyjs_version

STATIC = Path(__file__).resolve().parent / "static"
#: the scripts a page may load, by the name in their URL
SCRIPTS = ("plots.js", "facts.js")
_LONG = "public, max-age=31536000, immutable"
_SHORT = "public, max-age=300"


@cache
def plotly_name() -> str:
    """``plotly-4.1.1.min.js``: the versioned file name pages load plotly.js by."""
    return f"plotly-{get_plotlyjs_version()}.min.js"


def plotly_path() -> Path:
    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def script(name: str) -> Response:
    """``/explorer/assets/{name}``: one of :data:`SCRIPTS`, or plotly.js by its versioned
    name; any other name is a 404 (nothing but these files is ever read)."""
    if name == plotly_name():
        path, cache_control = plotly_path(), _LONG
    elif name in SCRIPTS:
        path, cache_control = STATIC / name, _SHORT
    else:
        return Response(f"no explorer asset {name!r}", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": cache_control})
