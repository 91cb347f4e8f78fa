"""The usage dashboard (``meter dashboard``): server-rendered HTML, SVG charts, a JSON API.

Pure parts (no I/O): ``format`` (numbers, units, times), ``models`` (the large-model
list), ``quotas`` (quota bars), ``breakdowns`` (sortable tables), ``hints`` (reducing
usage), ``alerts`` (the alert timeline), ``svg`` (charts), ``views`` (view models),
``html``/``layout``/``sections``/``pages`` (rendering). I/O: ``queries`` (SQL beyond
sinks.history), ``sources`` (the sink's read API or the store), ``checkapi``
(decisions), ``app`` (routes), ``server`` and ``cli`` (``register(app)``).
"""
