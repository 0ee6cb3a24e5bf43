"""The report layer: a run's files, report.md, report.html and two-run comparisons (docs/report.md).

    text         rows of a document and their text (console, report.md) and the one number formatting
    document     a metrics document read for display (model order and labels, row labels, accuracy series)
    html         the page machinery: CSS, escaping, tables, embedded PNGs, doc links, Markdown subset
    plots        PNG plots (matplotlib)
    sections/    the study report (schema 2): one module per section, SECTIONS in order, render_study_html
    classic      report.html of a schema-1 run
    comparison   comparison.html of two runs
    files        writing, reading, regenerating and comparing a run's files

Imports: host.core and host.study.gallery (the gallery format); never host.study's runner or a
command module (host.report, host.evaluate). Inside the package imports flow one way:
text <- document <- html (with plots) <- sections, classic, comparison <- files.
"""
