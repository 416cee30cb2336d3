"""The codec layer: Kafka's RecordBatch v2 encoded and decoded without I/O.

Everything here works on ``bytes``/``memoryview`` in and out, so the storage layer, the
clients and a future network server share one implementation of the format. The batch
layout, CRC-32C rules and record varints live in :mod:`logq.codec.batch`; compression
codecs (gzip always, snappy/lz4/zstd through the optional ``cramjam``) in
:mod:`logq.codec.compression`.
"""
