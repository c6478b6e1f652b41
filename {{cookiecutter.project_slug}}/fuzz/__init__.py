"""Coverage-guided fuzz targets for every parser a client's bytes reach.

``targets.py`` holds the targets (plain functions of one ``bytes`` input),
``__main__.py`` runs them under atheris (``make fuzz``), and ``corpus/``
keeps a seed corpus per target that ``make test`` replays. A crash that
atheris finds is written to ``fuzz/crashes/``; copy it into the target's
corpus folder and it stays a regression test for good.
"""
