"""OPTIMADE machinery the backends' serve views share: pure optimade and lark, no web app.

:mod:`.resources` turns a stored entry and its phase into an OPTIMADE structure row,
:mod:`.collection` is the read-only base of the ``/structures`` collections,
:mod:`.refresh` when a view is rebuilt, :mod:`.filter_parser` the fast filter parser,
:mod:`.limits` the bounds on one request, and :mod:`.view` what the serve app asks of a view.
It sits in storage so that each backend keeps its view beside its repository, and serve
(above) imports from here, never the other way.
"""
