"""Our partitioner must agree with Kafka's Java default partitioner byte for byte."""

import pytest

from ledger.partitioning import murmur2, partition_of


@pytest.mark.parametrize(
    ("key", "signed"),
    [
        # Vectors from Kafka's own UtilsTest.testMurmur2.
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key: str, signed: int) -> None:
    assert murmur2(key.encode()) == signed & 0xFFFFFFFF


def test_partition_is_positive_murmur2_modulo_count() -> None:
    assert partition_of("foobar", 6) == ((-790332482) & 0x7FFFFFFF) % 6
    assert {partition_of(f"acc-{n}", 6) for n in range(200)} == set(range(6))
