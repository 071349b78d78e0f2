"""The spec's data work compiled to SQL, one definition per rule, many engines.

``rules`` turns each ``quality.rules`` entry into sqlglot expressions plus the
engine-independent step that shapes their result rows into the report entry
of :mod:`mdlc_core.quality`; ``quality`` runs them on DuckDB in process.
The same expressions render for Spark SQL (``rules.render(..., "spark")``).
See docs/engines.md for what is compiled so far and what is not.
"""
