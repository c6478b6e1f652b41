"""A Jepsen-style fault-injection suite for the cluster: nodes, nemesis, history, checkers.

Real ``serve`` processes share one real ``redis-server``; each node reaches it
through a small TCP proxy that can black-hole its connections. Clients record
every operation (invocation time, completion time, result) into a
:class:`~chaos.history.History` while a nemesis injects faults from a seeded
schedule; the checkers then read the history, one per invariant of the
cluster (one owner, no acknowledged state lost, no resurrection, convergence,
no deaf node, broker data loss, workers).

``tests/test_chaos.py`` runs a short fixed-seed schedule in ``make test``;
``make chaos SEEDS=N`` runs N schedules (``python -m chaos`` with ``tests/``
on the path) and prints what it did and the violations per invariant.
"""
