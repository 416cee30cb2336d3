"""`logq serve`: a Kafka-protocol broker on a logq data directory.

Layers inside: ``kio_api`` (the only module importing kio), ``framing`` (sans-IO size
prefixes), ``apis`` (dispatch and ApiVersions), ``handlers/`` (one module per API family),
``context`` (Broker, Session, ServerConfig), ``idempotence`` (producer ids and
deduplication), ``transport`` (asyncio) and ``server`` (``logq.Server``). See docs/server.md.
"""
