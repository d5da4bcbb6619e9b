"""The flight recorder (issue 13): `ksight record` samples into an embedded store, runs the rules
on each window, captures deep evidence when one fires; `ksight report` lists episodes over any
past window.

Modules: `episode` (the Episode a report lists: the contract between the recorder's watcher, the
report and its HTML page), `store` (the SQLite recording), `recorder` (the sampling loop),
`watch` (rules on each window while recording, and the triggers), `episodes` (rules over a
recorded window, merged into episodes).
"""
