"""The explorer's pages as Jinja2 templates, autoescaped.

Every value a page shows passes through Jinja2's HTML escaping (formulas, sources, campaign
names and scheme names come from user files and must never become markup); values placed in
URLs are percent-encoded first. Templates are strings here so they ship inside the package.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import DictLoader, Environment, StrictUndefined

from gnomon.serve.explorer.assets import PALETTE

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · gnomon</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{ root }}/explorer/assets/explorer.css">
<script src="{{ root }}/explorer/assets/explorer.js" defer></script>
</head>
<body>
<header>
  <a href="{{ root }}/">gnomon explorer</a>
  {% if optimade %}<a href="{{ root }}/v1/info">OPTIMADE API</a>{% endif %}
  <form action="{{ root }}/systems" method="get" role="search">
    <label>chemical system <input name="chemsys" placeholder="Li-Mn-O" required></label>
    <button type="submit">show</button>
  </form>
</header>
<main>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

HOME = """{% extends "base.html" %}
{% block title %}campaigns{% endblock %}
{% block content %}
<h1>Campaigns</h1>
{% if not home.campaigns %}
<p class="muted">No campaigns in this database yet (its phases were imported or computed outside
a campaign).</p>
{% endif %}
{% for c in home.campaigns %}
<section class="campaign" id="campaign-{{ c.name }}">
<h2>{{ c.name }}</h2>
<p>Status <b>{{ c.status }}</b>, {{ c.rounds_done }} round{{ "" if c.rounds_done == 1 else "s" }}
done{% if c.stop_reason %}, stopped: {{ c.stop_reason }}{% endif %}.
{% if c.chemsys %}Chemical space:
{% for s in (c.schemes or [none]) %}
<a href="{{ system_url(c.chemsys, s) }}">{{ c.chemsys }}{% if s %} ({{ s }}){% endif %}</a>
{% endfor %}{% endif %}</p>
{% if c.rows %}
<div class="figure"><img src="{{ root }}/campaigns/{{ c.name | urlpart }}/metrics.svg"
  alt="hit rate, MAE and counts per round of campaign {{ c.name }}"></div>
<table class="metrics">
<thead><tr>{% for key, head in c.columns %}<th class="num">{{ head }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in c.rows %}<tr>{% for key, head in c.columns %}<td class="num">{{ r.get(key) | fmt(3) }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% else %}
<p class="muted">No round has recorded metrics yet.</p>
{% endif %}
</section>
{% endfor %}
<h2>Chemical systems</h2>
{% if home.systems %}
<p class="muted">{{ home.systems_total }} chemical system{{ "" if home.systems_total == 1 else "s" }}
with phases{% if home.schemes %}, in {{ home.schemes | length }} energy scheme{{ "" if home.schemes | length == 1 else "s" }}
({{ home.schemes | join(", ") }}){% endif %}{% if home.systems_total > home.systems | length %};
the first {{ home.systems | length }} are listed, find others with the box above{% endif %}.</p>
<ul class="systems">
{% for s in home.systems %}<li><a href="{{ system_url(s) }}">{{ s }}</a></li>
{% endfor %}</ul>
{% else %}
<p class="muted">No phases yet.</p>
{% endif %}
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

SYSTEM = """{% extends "base.html" %}
{% block title %}{{ v.chemsys }}{% endblock %}
{% block content %}
<h1>{{ v.chemsys }}</h1>
<p class="schemes">Energy scheme:
{% for s in v.schemes %}<a href="{{ system_url(v.chemsys, s, v.within) }}"{% if s == v.scheme %} class="current" aria-current="page"{% endif %}>{{ s }}</a>
{% endfor %}</p>
<p class="muted">Entries of different energy schemes never share a hull: this page shows the hull
of <b>{{ v.scheme }}</b> only{% if v.schemes | length > 1 %}; the links above show the others{% endif %}.</p>
<div class="figure" id="hull">
{% if not v.plottable %}
<p class="muted">Hull diagrams are drawn for 2 to 4 elements; {{ v.chemsys }} has {{ v.n_elements }}.</p>
{% elif not has_hull %}
<p class="muted">No hull for {{ v.chemsys }} in {{ v.scheme }}: {{ missing | join(", ") }} ha{{ "s" if missing | length == 1 else "ve" }} no reference entry in this scheme.</p>
{% else %}
<img src="{{ root }}/systems/{{ v.chemsys | urlpart }}/hull.svg?{{ {"scheme": v.scheme} | query }}"
  alt="hull diagram of {{ v.chemsys }} in {{ v.scheme }}">
{% endif %}
</div>
<h2>Stable and near-stable phases</h2>
<p>{{ v.n_stable }} stable of {{ v.n_phases }} phases in this space ({{ v.scheme }});
{{ v.rows | length }} listed{% if v.within != inf %}, those within {{ v.within | fmt(3) }} eV/atom
of the hull (<a href="{{ system_url(v.chemsys, v.scheme, inf) }}">list all</a>){% endif %}{% if v.truncated %};
only the first {{ v.rows | length }} are shown{% endif %}.</p>
<div class="filter">
  <label for="max-e-above-hull">Show phases with E above hull ≤</label>
  <input id="max-e-above-hull" type="number" min="0" step="0.005" placeholder="any"> eV/atom
  <span id="shown-count" class="muted" aria-live="polite"></span>
</div>
<table id="phases" class="sortable">
<thead><tr>
{% for key, head, kind in columns %}<th data-key="{{ key }}" data-type="{{ kind }}"{% if kind == "number" %} class="num"{% endif %}><button type="button">{{ head }}</button></th>
{% endfor %}</tr></thead>
<tbody>
{% for r in v.rows %}<tr data-id="{{ r.id }}" data-e-above-hull="{{ r.e_above_hull | raw }}"{% if r.is_stable %} class="stable"{% endif %}>
<td data-value="{{ r.formula }}"><a href="{{ root }}/phases/{{ r.id | urlpart }}">{{ r.formula }}</a></td>
<td>{{ r.chemsys }}</td>
<td class="num" data-value="{{ r.e_above_hull | raw }}">{{ r.e_above_hull | fmt(4) }}</td>
<td class="num" data-value="{{ r.formation_energy_per_atom | raw }}">{{ r.formation_energy_per_atom | fmt(4) }}</td>
<td class="num" data-value="{{ r.decomposition_energy | raw }}">{{ r.decomposition_energy | fmt(4) }}</td>
<td class="num" data-value="{{ r.energy_per_atom | raw }}">{{ r.energy_per_atom | fmt(4) }}</td>
<td>{{ "yes" if r.is_stable else "" }}</td>
<td>{{ r.decomposes_to | join(" + ") }}</td>
<td class="num" data-value="{{ r.nsites | raw }}">{{ r.nsites | fmt }}</td>
<td>{{ r.scheme }}</td>
<td>{{ r.source | fmt }}</td>
</tr>
{% endfor %}</tbody>
</table>
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

PHASE = """{% extends "base.html" %}
{% block title %}{{ p.phase.reduced_formula }} {{ p.phase.id }}{% endblock %}
{% block content %}
<h1>{{ p.phase.reduced_formula }} <span class="muted">{{ p.phase.id }}</span></h1>
<p>In <a href="{{ system_url(p.phase.chemsys, p.phase.scheme, inf) }}">{{ p.phase.chemsys }}</a>,
energy scheme {{ p.phase.scheme }}.</p>
<dl class="props">
{% for label, value in props %}<dt>{{ label }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
{% if p.structure is none %}
<p class="muted">No structure is stored for this phase: its entry is an energy only.</p>
{% else %}
<h2>Downloads</h2>
<p class="downloads">
{% for fmt, label in downloads %}<a href="{{ root }}/phases/{{ p.phase.id | urlpart }}/download/{{ fmt }}" download>{{ label }}</a>
{% endfor %}</p>
<h2>Structure</h2>
<div class="cell-view">
<div>
<dl class="props">
<dt>formula (cell)</dt><dd>{{ p.entry.formula }}</dd>
<dt>space group</dt><dd>{{ p.spacegroup | fmt }}</dd>
<dt>a, b, c (Å)</dt><dd>{% for x in p.lattice.abc %}{{ x | fmt(4) }}{{ ", " if not loop.last }}{% endfor %}</dd>
<dt>α, β, γ (°)</dt><dd>{% for x in p.lattice.angles %}{{ x | fmt(3) }}{{ ", " if not loop.last }}{% endfor %}</dd>
<dt>volume (Å³)</dt><dd>{{ p.lattice.volume | fmt(3) }}</dd>
<dt>density (g/cm³)</dt><dd>{{ p.lattice.density | fmt(3) }}</dd>
<dt>sites</dt><dd>{{ p.n_sites }}</dd>
</dl>
<table id="lattice"><caption>lattice vectors (Å)</caption>
<thead><tr><th></th><th class="num">x</th><th class="num">y</th><th class="num">z</th></tr></thead>
<tbody>{% for row in p.lattice.matrix %}<tr><th>{{ "abc"[loop.index0] }}</th>{% for x in row %}<td class="num">{{ x | fmt(5) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
</div>
<figure>
<svg width="{{ p.projection.size }}" height="{{ p.projection.size }}" role="img"
  aria-label="the cell seen along c">
<polygon points="{% for x, y in p.projection.cell %}{{ x }},{{ y }} {% endfor %}" fill="none" stroke="#777"/>
{% for atom in p.projection.atoms %}<circle cx="{{ atom.x }}" cy="{{ atom.y }}" r="6" fill="{{ color(atom.color) }}" stroke="#222" stroke-width="0.6"><title>{{ atom.element }}</title></circle>
{% endfor %}</svg>
<figcaption class="legend">seen along c:
{% for el in p.projection.elements %}<span><i style="background: {{ color(loop.index0) }}"></i>{{ el }}</span>{% endfor %}
</figcaption>
</figure>
</div>
<table id="sites" class="sortable">
<caption>sites{% if p.n_sites > p.sites | length %} (the first {{ p.sites | length }} of {{ p.n_sites }}){% endif %}</caption>
<thead><tr>
<th data-type="number" class="num"><button type="button">#</button></th>
<th data-type="text"><button type="button">species</button></th>
{% for h in ("a", "b", "c", "x (Å)", "y (Å)", "z (Å)") %}<th data-type="number" class="num"><button type="button">{{ h }}</button></th>{% endfor %}
</tr></thead>
<tbody>
{% for s in p.sites %}<tr><td class="num">{{ s.index }}</td><td>{{ s.species }}</td>
{% for x in s.frac %}<td class="num">{{ x | fmt(5) }}</td>{% endfor %}{% for x in s.cart %}<td class="num">{{ x | fmt(4) }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endif %}
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

ERROR = """{% extends "base.html" %}
{% block title %}{{ status }}{% endblock %}
{% block content %}
<h1>{{ title }}</h1>
<p class="error">{{ message }}</p>
<p><a href="{{ root }}/">Back to the campaigns</a></p>
{% endblock %}
"""

# (key, heading, sort type) of the system page's phase table, in column order
PHASE_COLUMNS = (
    ("formula", "formula", "text"),
    ("chemsys", "chemsys", "text"),
    ("e_above_hull", "E above hull (eV/atom)", "number"),
    ("formation_energy_per_atom", "formation energy (eV/atom)", "number"),
    ("decomposition_energy", "decomposition energy (eV/atom)", "number"),
    ("energy_per_atom", "energy (eV/atom)", "number"),
    ("is_stable", "stable", "text"),
    ("decomposes_to", "decomposes to", "text"),
    ("nsites", "sites", "number"),
    ("scheme", "scheme", "text"),
    ("source", "source", "text"),
)


def fmt(value: Any, digits: int | None = None) -> str:
    """A value as a table shows it: a dash for none, floats to ``digits`` places."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}" if digits is not None else f"{value:g}"
    return str(value)


def raw(value: Any) -> str:
    """A number at full precision for sorting and filtering in the page ('' for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def urlpart(value: Any) -> str:
    return quote(str(value), safe="")


def query(params: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None})


def make_environment(root: str = "") -> Environment:
    env = Environment(
        loader=DictLoader({"base.html": BASE, "home.html": HOME, "system.html": SYSTEM,
                           "phase.html": PHASE, "error.html": ERROR}),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    env.filters.update(fmt=fmt, raw=raw, urlpart=urlpart, query=query)
    env.globals.update(inf=math.inf, color=lambda i: PALETTE[i % len(PALETTE)])
    return env
