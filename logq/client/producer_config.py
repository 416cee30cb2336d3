"""The Producer's argument checks, and the codec it writes to each topic.

Every setting is refused, with ConfigError, when the Producer is built, before anything is
opened: a ``send`` never fails for a setting. ``compression_type`` is Kafka's
``none|gzip|snappy|lz4|zstd``; the codecs but gzip need the optional cramjam package
(``pip install logq[compression]``), checked here too, and ``compression_level`` must be
one that codec takes (gzip 1-9, zstd -131072-22).

The codec of a batch: the producer's ``compression_type`` when set; else its topic's
``compression_type`` config (``producer`` and ``uncompressed`` mean none: a logq producer
that sets nothing writes uncompressed batches). logq never recompresses a batch: a batch from
a producer that set its own codec, or from a Kafka client, is stored as it was sent.
"""

from __future__ import annotations

import os

from logq.client.futures import DeliveryQueue
from logq.client.partitioner import Partitioner
from logq.client.producer_metrics import ProducerMetrics
from logq.codec.compression import CODECS, EXTRA_HINT, check_level, codec_id, missing_library
from logq.config import FSYNC_MODES, LogConfig
from logq.errors import ConfigError

__all__ = ["DEFAULT_METADATA_MAX_AGE_MS", "Codec", "Extras", "check_settings", "producer_codec", "topic_codec"]

Codec = tuple[int, int | None]  # (codec id, level or None for the codec's default)

# Kafka's metadata.max.age.ms is 300000: there a refresh is a request to a broker. Here it is
# one stat() of the topic's metadata file when unchanged (about 3 us measured), so once a
# second costs nothing measurable and a running producer maps keys over partitions added by
# another process within about a second.
DEFAULT_METADATA_MAX_AGE_MS = 1000


class Extras:
    """The Producer's compression, partitioner, counters and callback queue, as one attribute.

    A Python object with 30 attributes or more loses CPython 3.11's fast attribute access
    (loads ~1.3x slower, measured): the Producer had 28, and ``send`` reads a dozen per call.
    ``plain``: no serializers, so bytes and None keys and values are taken as they are.
    ``metadata_max_age_ms``: how long a topic's cached partition count and limits are used
    before ``send`` reads the topic's metadata again (``DEFAULT_METADATA_MAX_AGE_MS``).
    """

    __slots__ = ("codec", "partitioner", "metrics", "delivery", "plain", "metadata_max_age_ms")

    def __init__(
        self, codec: Codec | None, partitioner: Partitioner | None, metrics: ProducerMetrics, delivery: DeliveryQueue
    ) -> None:
        self.codec = codec
        self.partitioner = partitioner
        self.metrics = metrics
        self.delivery = delivery
        self.plain = False
        self.metadata_max_age_ms = DEFAULT_METADATA_MAX_AGE_MS


def check_settings(
    data_dir: object,
    fsync: object,
    linger_ms: int,
    batch_size: int,
    buffer_bytes: int,
    max_block_ms: int,
    metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
) -> None:
    """Refuse a Producer setting out of range, before anything is opened."""
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ConfigError(f"data_dir={data_dir!r} is invalid: must be a path (str or os.PathLike)")
    if fsync is not None and fsync not in FSYNC_MODES:
        raise ConfigError(f"fsync={fsync!r} is invalid: None (the topic's setting) or one of {', '.join(FSYNC_MODES)}")
    for name, v, lo in (
        ("linger_ms", linger_ms, 0),
        ("batch_size", batch_size, 1),
        ("buffer_bytes", buffer_bytes, 1),
        ("max_block_ms", max_block_ms, 0),
        ("metadata_max_age_ms", metadata_max_age_ms, 0),
    ):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ConfigError(f"{name}={v!r} is invalid: must be an int >= {lo}")


def _usable(codec: int) -> int:
    why = missing_library(codec)
    if why is not None:
        raise ConfigError(why, hint=EXTRA_HINT)
    return codec


def producer_codec(compression_type: object, compression_level: object = None) -> Codec | None:
    """The (codec id, level) of a Producer's ``compression_type`` and ``compression_level``
    (None: its topics' codec, at its default level).

    ConfigError for a name that is not a codec, one whose library is not installed, a level
    the codec does not take (gzip 1-9, zstd -131072-22: Kafka's ranges), or a level without
    a ``compression_type`` (a level belongs to one codec).
    """
    if compression_type is None:
        if compression_level is not None:
            raise ConfigError(
                f"compression_level={compression_level!r} needs a compression_type: a level belongs to one codec"
            )
        return None
    codec = _usable(codec_id(compression_type))
    return codec, check_level(codec, compression_level)


def topic_codec(config: LogConfig) -> Codec:
    """The codec a producer that set none writes to a topic with ``config`` (see above)."""
    name = config.compression_type
    return (_usable(CODECS[name]) if name in CODECS else 0), None
