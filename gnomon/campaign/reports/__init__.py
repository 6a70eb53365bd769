"""Campaign reports: Markdown with per-round metrics, stage and per-system tables, and the
figures (learning curves, hull diagrams) as PNG. The CLI and the web explorer both draw from
here."""
