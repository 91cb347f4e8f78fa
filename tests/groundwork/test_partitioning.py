"""murmur2 matches Kafka's Java implementation on its published test vectors."""

from groundwork.partitioning import murmur2, partition_for


def test_murmur2_matches_kafka_java_vectors() -> None:
    # From Kafka's UtilsTest.testMurmur2 (signed ints there, unsigned here).
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in vectors.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


def test_partition_is_positive_modulo() -> None:
    assert all(0 <= partition_for(f"ws-{i}".encode(), 4) < 4 for i in range(100))
