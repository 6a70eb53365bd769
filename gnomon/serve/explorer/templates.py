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

from gnomon.serve.explorer.facts import novelty_line, spacegroup_number
from gnomon.serve.explorer.page_templates import CAMPAIGN, COMPARE, SEARCH

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · gnomon</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{ root }}/explorer/assets/explorer.css">
<script src="{{ root }}/explorer/assets/explorer.js" defer></script>
{% block scripts %}{% endblock %}
</head>
<body>
<a class="skip" href="#main">Skip to the content</a>
<header>
  <a href="{{ root }}/">gnomon explorer</a>
  <a href="{{ root }}/search">search</a>
  {% if optimade %}<a href="{{ root }}/v1/info">OPTIMADE API</a>{% endif %}
  <form action="{{ root }}/systems" method="get" role="search">
    <label>chemical system <input name="chemsys" placeholder="Li-Mn-O" required></label>
    <button type="submit">show</button>
  </form>
</header>
<main id="main" tabindex="-1">
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
<h2><a href="{{ root }}/campaigns/{{ c.name | urlpart }}">{{ c.name }}</a></h2>
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
{% if home.campaigns | length > 1 %}
<form class="compare" action="{{ root }}/campaigns/compare" method="get">
<h2>Compare two campaigns</h2>
<label>campaign <select name="a">{% for c in home.campaigns %}<option{% if loop.first %} selected{% endif %}>{{ c.name }}</option>{% endfor %}</select></label>
<label>with <select name="b">{% for c in home.campaigns %}<option{% if loop.index == 2 %} selected{% endif %}>{{ c.name }}</option>{% endfor %}</select></label>
<button type="submit">compare</button>
</form>
{% endif %}
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
{% block scripts %}{% if v.plottable and has_hull %}<link rel="preload" as="fetch" crossorigin="anonymous" href="{{ hull_src }}">
<script src="{{ root }}/explorer/assets/{{ plotly_js }}" defer></script>
<script src="{{ root }}/explorer/assets/plots.js" defer></script>{% endif %}
<script src="{{ root }}/explorer/assets/facts.js" defer></script>{% endblock %}
{% block content %}
<h1>{{ v.chemsys }}</h1>
<p class="schemes">Energy scheme:
{% for s in v.schemes %}<a href="{{ system_url(v.chemsys, s, v.within) }}"{% if s == v.scheme %} class="current" aria-current="page"{% endif %}>{{ s }}</a>
{% endfor %}</p>
<p class="muted">Entries of different energy schemes never share a hull: this page shows the hull
of <b>{{ v.scheme }}</b> only{% if v.schemes | length > 1 %}; the links above show the others{% endif %}.</p>
<figure class="figure" id="hull">
{% if not v.plottable %}
<p class="muted">Hull diagrams are drawn for 2 to 4 elements; {{ v.chemsys }} has {{ v.n_elements }}.</p>
{% elif not has_hull %}
<p class="muted">No hull for {{ v.chemsys }} in {{ v.scheme }}: {{ missing | join(", ") }} ha{{ "s" if missing | length == 1 else "ve" }} no reference entry in this scheme.</p>
{% else %}
<div id="hull-plot" class="plot" data-links="1" role="img" tabindex="0"
  data-figure="{{ hull_src }}"
  aria-label="Interactive hull of {{ v.chemsys }} in {{ v.scheme }}: the {{ v.window | length }} phases of the window, stable ones as stars, coloured by energy above the hull; the table below lists them"></div>
<figcaption>Every phase within {{ "any energy" if v.within == inf else (v.within | fmt(3)) ~ " eV/atom" }} of the hull, coloured by its energy above the hull (stars: on the hull). Point at a phase for its formula, space group, energy, source and campaign; click it to open its page. The table below lists the same phases.
Static figure: <a href="{{ root }}/systems/{{ v.chemsys | urlpart }}/hull.svg?{{ {"scheme": v.scheme} | query }}" download>SVG</a>.</figcaption>
<details class="static-figure"><summary>Static figure</summary>
<img loading="lazy" src="{{ root }}/systems/{{ v.chemsys | urlpart }}/hull.svg?{{ {"scheme": v.scheme} | query }}"
  alt="hull diagram of {{ v.chemsys }} in {{ v.scheme }}: the stable phases joined by tie lines">
</details>
{% endif %}
</figure>
<h2>Stable and near-stable phases</h2>
<p>{{ v.n_stable }} stable of {{ v.n_phases }} phases in this space ({{ v.scheme }});
{{ v.window | length }} {% if v.within != inf %}within {{ v.within | fmt(3) }} eV/atom
of the hull (<a href="{{ system_url(v.chemsys, v.scheme, inf) }}">list all</a>){% else %}listed{% endif %}{% if v.truncated %};
the table shows the {{ v.rows | length }} nearest the hull (<a href="{{ root }}/systems/{{ v.chemsys | urlpart }}?{{ {"scheme": v.scheme, "within": within_param, "rows": "all"} | query }}">show all {{ v.window | length }}</a>){% endif %}.</p>
<p class="downloads"><a href="{{ root }}/systems/{{ v.chemsys | urlpart }}/phases.zip?{{ {"scheme": v.scheme, "within": within_param} | query }}" download>Download the {{ v.window | length }} phases: CIFs and a CSV of their energies (zip)</a></p>
<div class="filter">
  <label for="max-e-above-hull">Show phases with E above hull ≤</label>
  <input id="max-e-above-hull" type="number" min="0" step="0.005" placeholder="any"> eV/atom
  <span id="shown-count" class="muted" aria-live="polite"></span>
</div>
<div class="table-wrap">
<table id="phases" class="sortable"{% if facts_src %} data-facts-src="{{ facts_src }}"{% endif %}>
<thead><tr>
{% for key, head, kind in columns %}<th data-key="{{ key }}" data-type="{{ kind }}"{% if kind == "number" %} class="num"{% endif %}><button type="button">{{ head }}</button></th>
{% endfor %}</tr></thead>
<tbody>
{% for r in v.rows %}{% set nov = novelty.get(r.id) %}<tr data-id="{{ r.id }}" data-e-above-hull="{{ r.e_above_hull | raw }}"{% if r.is_stable %} class="stable"{% endif %}>
<td data-value="{{ r.formula }}"><a href="{{ root }}/phases/{{ r.id | urlpart }}">{{ r.formula }}</a></td>
<td>{{ r.chemsys }}</td>
<td data-value="{{ r.spacegroup | sg_number }}">{{ r.spacegroup | fmt }}</td>
<td class="num" data-value="{{ r.e_above_hull | raw }}">{{ r.e_above_hull | fmt(4) }}</td>
<td class="num" data-value="{{ r.formation_energy_per_atom | raw }}">{{ r.formation_energy_per_atom | fmt(4) }}</td>
<td class="num" data-value="{{ r.decomposition_energy | raw }}">{{ r.decomposition_energy | fmt(4) }}</td>
<td class="num" data-value="{{ r.energy_per_atom | raw }}">{{ r.energy_per_atom | fmt(4) }}</td>
<td>{{ "yes" if r.is_stable else "" }}</td>
<td>{{ r.decomposes_to | join(" + ") }}</td>
<td class="num" data-value="{{ r.nsites | raw }}">{{ r.nsites | fmt }}</td>
<td data-fact="novelty" data-value="{{ nov.flag if nov else "" }}">{{ nov.text if nov else "…" }}</td>
<td>{{ r.source | fmt }}</td>
</tr>
{% endfor %}</tbody>
</table>
</div>
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

PHASE = """{% extends "base.html" %}
{% block title %}{{ p.phase.reduced_formula }} {{ p.phase.id }}{% endblock %}
{% block scripts %}{% if p.structure is not none %}{% set base = root ~ "/phases/" ~ (p.phase.id | urlpart) %}<link rel="preload" as="fetch" crossorigin="anonymous" href="{{ base }}/structure.json?cell={{ cells[0] }}">
<script src="{{ root }}/explorer/assets/{{ plotly_js }}" defer></script>
<script src="{{ root }}/explorer/assets/plots.js" defer></script>
<script src="{{ root }}/explorer/assets/facts.js" defer></script>{% endif %}{% endblock %}
{% block content %}
{% set base = root ~ "/phases/" ~ (p.phase.id | urlpart) %}
<h1>{{ p.phase.reduced_formula }} <span class="muted">{{ p.phase.id }}</span></h1>
<p>In <a href="{{ system_url(p.phase.chemsys, p.phase.scheme, inf) }}">{{ p.phase.chemsys }}</a>,
energy scheme {{ p.phase.scheme }}{% if p.spacegroup %}, space group {{ p.spacegroup }}{% endif %}.</p>
<dl class="props">
{% for label, value in props %}<dt>{{ label }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
<h2 id="novelty">Novelty</h2>
{% if p.structure is none %}
<p class="muted">Not checked: {{ p.phase.reduced_formula }} has no stored structure to compare.</p>
{% else %}
<dl class="props" id="novelty-facts"{% if novelty is none %} data-novelty-src="{{ base }}/novelty.json" aria-busy="true"{% endif %}>
<dt>verdict</dt><dd data-novelty="verdict">{% if novelty is none %}checking…{% else %}{{ novelty_line(novelty) }}{% endif %}</dd>
<dt>AMD to the nearest known phase (Å)</dt><dd data-novelty="amd">{{ "…" if novelty is none else (novelty.amd | fmt(3)) }}</dd>
<dt>nearest known phase</dt><dd data-novelty="nearest">{% if novelty is not none and novelty.nearest_id %}{% if nearest_url %}<a href="{{ nearest_url }}">{{ novelty.nearest_formula }} {{ novelty.nearest_id }}</a>{% else %}{{ novelty.nearest_formula }} {{ novelty.nearest_id }}{% endif %}{% else %}{{ "…" if novelty is none else "–" }}{% endif %}</dd>
</dl>
<p class="muted">new: no known phase of this composition matches it (pymatgen's StructureMatcher); known: one does; ordering-of-disordered: it matches a known disordered phase only as an ordering of it. AMD is the average-minimum-distance between the two crystals at the known phase's density: 0 for the same geometry.</p>
{% endif %}
<h2 id="lineage">Lineage</h2>
{% if not lineage %}
<p class="muted">No candidate or calculation is recorded for this entry: its energy was imported.</p>
{% else %}
<ol class="lineage">
{% for step in lineage %}<li class="step-{{ step.kind }}"><h3>{{ step.title }}</h3>
<dl class="props">{% for f in step.facts %}<dt>{{ f.label }}</dt><dd>{% if f.phase %}<a href="{{ root }}/phases/{{ f.phase | urlpart }}">{{ f.value }}</a>{% else %}{{ f.value }}{% endif %}</dd>
{% endfor %}</dl></li>
{% endfor %}</ol>
{% endif %}
{% if p.structure is none %}
<p class="muted">No structure is stored for this phase: its entry is an energy only.</p>
{% else %}
<h2>Downloads</h2>
<p class="downloads">
{% for fmt, label in downloads %}<a href="{{ base }}/download/{{ fmt }}" download>{{ label }}</a>
{% endfor %}</p>
<h2 id="structure">Structure</h2>
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
<figure class="viewer">
<div role="group" aria-label="cell shown" class="toggle">
{% for cell in cells %}<button type="button" data-figure-target="structure-plot" data-figure-src="{{ base }}/structure.json?cell={{ cell }}" aria-pressed="{{ "true" if loop.first else "false" }}">{{ cell }} cell</button>
{% endfor %}</div>
<div id="structure-plot" class="plot" role="img" tabindex="0" data-figure="{{ base }}/structure.json?cell={{ cells[0] }}"
  aria-label="3D view of the {{ p.phase.reduced_formula }} crystal structure: atoms coloured and sized by element, bonds and the unit cell; drag to rotate, scroll to zoom"></div>
<figcaption>Drag to rotate, scroll to zoom; atoms in Jmol colours, sized by atomic radius; bonds join atoms nearer than 1.2 × the sum of their covalent radii. Click an element in the legend to hide it.</figcaption>
</figure>
</div>
<div class="table-wrap">
<table id="sites" class="sortable">
<caption>sites of the stored cell{% if p.n_sites > p.sites | length %} (the first {{ p.sites | length }} of {{ p.n_sites }}){% endif %}</caption>
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
</div>
<h2 id="xrd">Powder X-ray diffraction</h2>
{% if xrd_error %}<p class="error">{{ xrd_error }}</p>{% endif %}
<form class="xrd" method="get" action="{{ base }}#xrd">
<label>wavelength <select name="wavelength">{% for name, value in wavelengths %}<option value="{{ name }}"{% if name == radiation.value %} selected{% endif %}>{{ name }} ({{ value | fmt(5) }} Å)</option>{% endfor %}
{% if radiation.value not in wavelength_names %}<option value="{{ radiation.value }}" selected>{{ radiation.label }}</option>{% endif %}</select></label>
<button type="submit">show</button>
</form>
<div id="xrd-plot" class="plot" role="img" tabindex="0" data-figure="{{ base }}/xrd.json?{{ {"wavelength": radiation.value} | query }}"
  aria-label="powder X-ray diffraction pattern of {{ p.phase.reduced_formula }} for {{ radiation.label }}; its strongest peaks are tabled below"></div>
<table id="xrd-peaks">
<caption>the {{ strongest | length }} strongest peaks, {{ radiation.label }} ({{ radiation.wavelength | fmt(5) }} Å), pymatgen's XRDCalculator
(<a href="{{ base }}/xrd.csv?{{ {"wavelength": radiation.value} | query }}" download>all {{ n_peaks }} peaks as CSV</a>)</caption>
<thead><tr><th class="num">2θ (°)</th><th class="num">intensity</th><th class="num">d (Å)</th><th>hkl</th><th class="num">multiplicity</th></tr></thead>
<tbody>{% for pk in strongest %}<tr><td class="num">{{ pk.two_theta | fmt(3) }}</td><td class="num">{{ pk.intensity | fmt(1) }}</td><td class="num">{{ pk.d | fmt(4) }}</td><td>{{ pk.hkl }}</td><td class="num">{{ pk.multiplicity }}</td></tr>
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

# (key, heading, sort type) of the system page's phase table, in column order (one scheme a
# page: the scheme is named above the table, not in every row)
PHASE_COLUMNS = (
    ("formula", "formula", "text"),
    ("chemsys", "chemsys", "text"),
    ("spacegroup", "space group", "number"),
    ("e_above_hull", "E above hull (eV/atom)", "number"),
    ("formation_energy_per_atom", "formation energy (eV/atom)", "number"),
    ("decomposition_energy", "decomposition energy (eV/atom)", "number"),
    ("energy_per_atom", "energy (eV/atom)", "number"),
    ("is_stable", "stable", "text"),
    ("decomposes_to", "decomposes to", "text"),
    ("nsites", "sites", "number"),
    ("novelty", "novelty", "text"),
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
        return unsigned_zero(f"{value:.{digits}f}" if digits is not None else f"{value:g}")
    return str(value)


def unsigned_zero(text: str) -> str:
    """``-0.00000`` as ``0.00000``: a coordinate that rounds to zero has no sign to show."""
    if text.startswith("-") and text.lstrip("-").replace(".", "").strip("0") == "":
        return text[1:]
    return text


def raw(value: Any) -> str:
    """A number at full precision for sorting and filtering in the page ('' for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def sg_number(text: str | None) -> str:
    """A space group's number, for sorting a table by it ('' for none)."""
    number = spacegroup_number(text)
    return "" if number is None else str(number)


def urlpart(value: Any) -> str:
    return quote(str(value), safe="")


def query(params: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None})


def make_environment(root: str = "") -> Environment:
    env = Environment(
        loader=DictLoader({"base.html": BASE, "home.html": HOME, "system.html": SYSTEM,
                           "phase.html": PHASE, "error.html": ERROR, "search.html": SEARCH,
                           "campaign.html": CAMPAIGN, "compare.html": COMPARE}),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    env.filters.update(fmt=fmt, raw=raw, urlpart=urlpart, query=query, sg_number=sg_number,
                       fmt_blank=lambda v: "" if v is None else v)
    env.globals.update(inf=math.inf, novelty_line=novelty_line)
    return env
