from __future__ import annotations

from stream.kafka.drain import parse_positions

METRICS = """# HELP profilestream_position Next offset to process
# TYPE profilestream_position gauge
profilestream_position{partition="0"} 1250.0
profilestream_position{partition="3"} 0.0
profilestream_events_total 1250.0
profilestream_positions_bogus 7.0
"""


def test_positions_are_read_per_partition_from_the_metrics_text() -> None:
    assert parse_positions(METRICS) == {0: 1250, 3: 0}
    assert parse_positions("") == {}
