"""The peer: a minimal faust-streaming agent (consume -> trivial transform -> produce).

Started as ``faust -A benchmarks.faust_peer worker --without-web`` by benchmarks/pipeline.py
with PEER_BROKER, PEER_SRC, PEER_DST and PEER_ID in the environment.
"""

import os

import faust
import orjson

app = faust.App(
    f"peer-{os.environ.get('PEER_ID', 'x')}",
    broker=f"kafka://{os.environ.get('PEER_BROKER', '127.0.0.1:9092')}",
    value_serializer="raw",
    topic_partitions=1,
    web_enabled=False,
)
source = app.topic(os.environ.get("PEER_SRC", "peer.src"), value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ.get("PEER_DST", "peer.dst"), value_type=bytes, value_serializer="raw")


@app.agent(source)
async def passthrough(stream):
    async for value in stream:
        record = orjson.loads(value)
        record["_peer"] = 1
        await sink.send(value=orjson.dumps(record))
