"""The search, campaign and comparison pages' templates (autoescaped, like every page's:
:mod:`gnomon.serve.explorer.templates` registers them)."""

from __future__ import annotations

SEARCH = """{% extends "base.html" %}
{% block title %}search{% endblock %}
{% block scripts %}<script src="{{ root }}/explorer/assets/facts.js" defer></script>{% endblock %}
{% block content %}
<h1>Search phases</h1>
<form class="search" method="get" action="{{ root }}/search" aria-describedby="search-help">
<fieldset><legend>composition</legend>
<label>formula <input name="formula" value="{{ form.formula }}" placeholder="LiMnO2"></label>
<label>elements <input name="elements" value="{{ form.elements }}" placeholder="Li, O"></label>
<label>the phase has <select name="mode">{% for key, label in (("all", "all of them (HAS ALL)"), ("only", "only these (HAS ONLY)"), ("any", "any of them (HAS ANY)")) %}<option value="{{ key }}"{% if form.mode == key %} selected{% endif %}>{{ label }}</option>{% endfor %}</select></label>
<label>elements, at least <input name="nelements_min" type="number" min="1" max="118" value="{{ form.nelements_min | fmt_blank }}"></label>
<label>at most <input name="nelements_max" type="number" min="1" max="118" value="{{ form.nelements_max | fmt_blank }}"></label>
</fieldset>
<fieldset><legend>energy and origin</legend>
<label>E above hull ≤ <input name="max_e_above_hull" type="number" min="0" step="0.005" value="{{ form.max_e_above_hull | fmt_blank }}"> eV/atom</label>
<label><input type="checkbox" name="stable" value="1"{% if form.stable %} checked{% endif %}> on the hull</label>
<label>campaign <select name="campaign"><option value="">any</option>{% for c in campaigns %}<option{% if form.campaign == c %} selected{% endif %}>{{ c }}</option>{% endfor %}</select></label>
<label>scheme <select name="scheme"><option value="">any</option>{% for s in schemes %}<option{% if form.scheme == s %} selected{% endif %}>{{ s }}</option>{% endfor %}</select></label>
<label>novelty <select name="novelty"><option value="">any</option>{% for n in novelty_flags %}<option{% if form.novelty == n %} selected{% endif %}>{{ n }}</option>{% endfor %}</select></label>
</fieldset>
<fieldset><legend>or an OPTIMADE filter</legend>
<label class="wide">filter <input name="filter" value="{{ form.filter }}" placeholder='elements HAS ALL "Li","O" AND _gnomon_e_above_hull<=0.05'></label>
</fieldset>
<input type="hidden" name="sort" value="{{ form.sort }}">{% if form.descending %}<input type="hidden" name="descending" value="1">{% endif %}
<button type="submit">search</button> <a href="{{ root }}/search">clear</a>
</form>
<p id="search-help" class="muted">The fields become an OPTIMADE filter, run by this server's own API; a typed filter is run as it is. Novelty is computed here, not an OPTIMADE field.</p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if result %}
<section class="api" aria-label="the API request behind this search">
<p>OPTIMADE filter: <code>{{ result.filter or "(none: every structure)" }}</code>{% if result.sort %}, sorted by <code>{{ result.sort }}</code>{% endif %}</p>
<p>The same search from the API: <a href="{{ result.api_url }}"><code>{{ result.api_url }}</code></a></p>
{% if result.novelty_note %}<p class="muted">{{ result.novelty_note }}</p>{% endif %}
</section>
<p>{{ result.total }} phase{{ "" if result.total == 1 else "s" }} found{% if result.total %}; {{ result.first }} to {{ result.last }} shown{% endif %}.
{% if result.total %}<a href="{{ root }}/search/phases.zip?{{ form.query(page=1) }}" download>Download {{ "all" if result.total <= max_download else "the first " ~ max_download }} as CIFs and a CSV of energies (zip)</a>{% endif %}</p>
{% if result.rows %}
<div class="table-wrap">
<table id="results"{% if facts_src %} data-facts-src="{{ facts_src }}"{% endif %}>
<thead><tr>
{% for key, head in columns %}<th{% if key in numeric %} class="num"{% endif %}{% if key == form.sort %} aria-sort="{{ "descending" if form.descending else "ascending" }}"{% endif %}>{% if key in sorts %}<a href="{{ root }}/search?{{ form.query(sort=key, descending=(key == form.sort and not form.descending), page=1) }}">{{ head }}</a>{% else %}{{ head }}{% endif %}</th>{% endfor %}
</tr></thead>
<tbody>
{% for r in result.rows %}{% set nov = novelty.get(r.id) %}<tr data-id="{{ r.id }}"{% if r.is_stable %} class="stable"{% endif %}>
<td><a href="{{ root }}/phases/{{ r.id | urlpart }}">{{ r.formula }}</a></td>
<td><a href="{{ system_url(r.chemsys, r.scheme) }}">{{ r.chemsys }}</a></td>
<td>{{ r.spacegroup | fmt }}</td>
<td class="num">{{ r.e_above_hull | fmt(4) }}</td>
<td class="num">{{ r.formation_energy_per_atom | fmt(4) }}</td>
<td class="num">{{ r.nelements }}</td>
<td class="num">{{ r.nsites | fmt }}</td>
<td data-fact="novelty">{{ nov.text if nov else "…" }}</td>
<td>{{ r.scheme }}</td>
<td>{{ r.campaign | fmt }}</td>
</tr>
{% endfor %}</tbody>
</table>
</div>
<nav class="pages" aria-label="result pages">
{% if result.page > 1 %}<a rel="prev" href="{{ root }}/search?{{ form.query(page=result.page - 1) }}">← previous</a>{% endif %}
<span>page {{ result.page }} of {{ result.pages }}</span>
{% if result.page < result.pages %}<a rel="next" href="{{ root }}/search?{{ form.query(page=result.page + 1) }}">next →</a>{% endif %}
</nav>
{% endif %}
{% endif %}
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

CAMPAIGN = """{% extends "base.html" %}
{% block title %}campaign {{ c.campaign.name }}{% endblock %}
{% block content %}
<h1>Campaign {{ c.campaign.name }}</h1>
<p>Status <b>{{ c.campaign.status }}</b>, {{ c.campaign.rounds_done }} round{{ "" if c.campaign.rounds_done == 1 else "s" }} done{% if c.campaign.stop_reason %}, stopped: {{ c.campaign.stop_reason }}{% endif %}.
{% if c.chemsys %}Chemical space <a href="{{ system_url(c.chemsys) }}">{{ c.chemsys }}</a>.{% endif %}
<a href="{{ root }}/search?{{ {"campaign": c.campaign.name} | query }}">All its phases</a>.</p>
{% if c.others %}<form class="compare" action="{{ root }}/campaigns/compare" method="get"><input type="hidden" name="a" value="{{ c.campaign.name }}">
<label>Compare with <select name="b">{% for o in c.others %}<option>{{ o }}</option>{% endfor %}</select></label> <button type="submit">compare</button></form>{% endif %}
<h2>What each round found</h2>
{% for r in c.rounds %}
<section class="round" id="round-{{ r.index }}">
<h3>Round {{ r.index }}</h3>
<p>{{ r.relaxed }} relaxation{{ "" if r.relaxed == 1 else "s" }} ingested{% if r.metrics %}; hit rate {{ r.metrics.get("hit_rate") | fmt(3) }}, new stable {{ r.metrics.get("new_stable") | fmt }}{% endif %}.</p>
{% if r.found %}
<ul class="found">{% for f in r.found %}<li><a href="{{ root }}/phases/{{ f.id | urlpart }}">{{ f.formula }}</a> ({{ f.spacegroup | fmt }}), E above hull {{ f.e_above_hull | fmt(3) }} eV/atom{% if f.stable_at_ingest %}, below the hull when it arrived{% endif %}{% if f.is_stable %}, on the hull now{% else %}, since passed by another phase{% endif %}</li>
{% endfor %}</ul>
{% else %}<p class="muted">No new stable phase this round.</p>{% endif %}
</section>
{% endfor %}
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)

COMPARE = """{% extends "base.html" %}
{% block title %}{{ a.name }} vs {{ b.name }}{% endblock %}
{% block content %}
<h1>{{ a.name }} and {{ b.name }}</h1>
{% if a.chemsys != b.chemsys %}<p class="error">These campaigns explored different chemical spaces ({{ a.chemsys | fmt }} and {{ b.chemsys | fmt }}): their numbers are not comparable.</p>{% endif %}
<table id="compare">
<thead><tr><th></th><th class="num"><a href="{{ root }}/campaigns/{{ a.name | urlpart }}">{{ a.name }}</a></th><th class="num"><a href="{{ root }}/campaigns/{{ b.name | urlpart }}">{{ b.name }}</a></th></tr></thead>
<tbody>
<tr><th>chemical space</th><td class="num">{{ a.chemsys | fmt }}</td><td class="num">{{ b.chemsys | fmt }}</td></tr>
<tr><th>energy schemes</th><td class="num">{{ a.schemes | join(", ") }}</td><td class="num">{{ b.schemes | join(", ") }}</td></tr>
<tr><th>rounds with metrics</th><td class="num">{{ a.rounds }}</td><td class="num">{{ b.rounds }}</td></tr>
<tr><th>oracle calls (relaxations, failed ones included)</th><td class="num">{{ a.oracle_calls }}</td><td class="num">{{ b.oracle_calls }}</td></tr>
<tr><th>hits (on or below the hull before their round)</th><td class="num">{{ a.hits }}</td><td class="num">{{ b.hits }}</td></tr>
<tr><th>hit rate</th><td class="num">{{ a.hit_rate | fmt(3) }}</td><td class="num">{{ b.hit_rate | fmt(3) }}</td></tr>
<tr><th>stable phases found (on the hull now)</th><td class="num">{{ a.stable_found }}</td><td class="num">{{ b.stable_found }}</td></tr>
<tr><th>stable phases per oracle call</th><td class="num">{{ a.stable_per_call | fmt(3) }}</td><td class="num">{{ b.stable_per_call | fmt(3) }}</td></tr>
</tbody>
</table>
<p class="muted">A hit is a relaxation that landed on or below the hull as it stood before its round; the hit rate is hits over relaxations, over all rounds. Stable phases found are the campaign's own phases on the hull of its scheme now.</p>
{% endblock %}
"""  # noqa: E501 (markup: a line break inside it would be output)
