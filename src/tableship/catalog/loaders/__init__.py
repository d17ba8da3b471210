"""Load targets for ``tableship restore --load``: one module per engine behind the
:class:`~tableship.catalog.loaders.base.Loader` protocol (``duckdb``, ``sqlalchemy``, ``hs2``);
``targets`` turns a ``--load`` value into one."""
