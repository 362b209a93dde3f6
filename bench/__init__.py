"""Benchmarks of Chainlog against the local stack: ``python -m bench.run``.

Modules: ``events`` (realistic payloads), ``load`` (the HTTP load generator),
``e2e`` (ack → queryable measurement), ``chainer`` (drain rate from Kafka
offsets), ``verify`` (the 1M-event chain fixture and its verification),
``baseline`` + ``baseline_app`` (the single-table, trigger-chained
alternative), ``services`` (our processes), ``profile`` (py-spy), ``report``
(table and JSON).
"""
