"""SIEM record formats: pure functions from a served event to another schema or wire text.

One module per format, usable by any destination: ``ocsf`` (OCSF 1.1.0
records), ``udm`` (Google SecOps UDM events), ``otlp`` (OTLP/HTTP logs),
``cef`` (ArcSight/Sentinel CEF:0), ``leef`` (QRadar LEEF 2.0) and
``syslog`` (RFC 5424 messages and RFC 6587 octet-counting frames).
``common`` holds what they share: how an action is classified (log on,
account change, ...), whether it names an outcome, and exact time
conversions. Nothing here does I/O or reads a clock.

A served event is the hashed object of ``docs/hash-chain.md`` (flat:
``actor_id``, ``action``, ``metadata``, ...) plus ``hash``, ``ip_country``
and ``ip_city``.
"""
