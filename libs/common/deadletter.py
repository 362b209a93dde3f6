"""The dead-letter topic: what a consumer cannot process, with the reason.

A dead-lettered record keeps its key and value untouched; headers say why
(``chainlog-reason``), from where (``chainlog-source``: topic/partition/offset)
and which stage refused it (``chainlog-stage``). The stream then moves on.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition


def headers(tp: TopicPartition, offset: int, reason: str, stage: str) -> list[tuple[str, bytes]]:
    return [
        ("chainlog-reason", reason.encode()),
        ("chainlog-source", f"{tp.topic}/{tp.partition}/{offset}".encode()),
        ("chainlog-stage", stage.encode()),
    ]


async def send(
    producer: Any, topic: str, tp: TopicPartition, record: Any, reason: str, stage: str
) -> None:
    """Send ``record`` to the dead-letter topic (inside any open transaction)."""
    await producer.send(
        topic,
        record.value or b"",
        key=record.key,
        partition=tp.partition,
        headers=headers(tp, record.offset, reason, stage),
    )
