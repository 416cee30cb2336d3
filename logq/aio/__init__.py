"""asyncio clients (aiokafka's shape) over the sync clients' core: AIOProducer and AIOConsumer.

logq/aio/producer.py and logq/aio/consumer.py say what runs on the loop, what runs in a
worker thread, how an idle consumer waits (inotify through ``loop.add_reader``) and what
cancellation guarantees; logq/aio/bridge.py holds the two helpers between threads and loop.
"""

from logq.aio.consumer import AIOConsumer
from logq.aio.producer import AIOProducer

__all__ = ["AIOConsumer", "AIOProducer"]
