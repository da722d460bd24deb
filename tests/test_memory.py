"""Sizes, available memory and the sampled resident peak of one piece of work (real allocations)."""

import numpy as np
import pytest

from _devswitch import memory


@pytest.mark.parametrize(
    ("text", "size"),
    [("8GiB", 8 * 2**30), ("512 MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1048576", 2**20), ("1.5gib", 3 * 2**29)],
)
def test_sizes_as_people_write_them(text, size):
    assert memory.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "8 parsecs", "-1GiB", "0", "1e9", "8 GiB extra"])
def test_a_bad_size_names_the_text_and_the_units(text):
    with pytest.raises(ValueError, match="not a size") as caught:
        memory.parse_size(text)
    assert repr(text) in str(caught.value)


def test_format_size():
    assert [memory.format_size(n) for n in (None, 12, 3 * 2**10, 312 * 2**20, 1.5 * 2**30)] == [
        "-",
        "12 B",
        "3.0 KiB",
        "312 MiB",
        "1.5 GiB",
    ]


def test_the_peak_of_one_piece_of_work_is_above_its_start_not_the_process_life():
    """200 MiB touched and freed inside the block reads about 200 MiB; an empty block after it reads
    about nothing, although ru_maxrss stays at the high mark."""
    assert memory.available_memory() is None or memory.available_memory() > 0

    def touch():
        block = np.ones(200 * 2**20, dtype=np.uint8)
        assert block.sum() == 200 * 2**20
        del block

    with memory.RssSampler() as big:
        touch()
    with memory.RssSampler() as empty:
        pass
    if big.before_bytes is None:
        pytest.skip("no /proc/self/statm on this system: the peak is not measured there")
    assert 180 * 2**20 <= big.above_before_bytes <= 260 * 2**20, big
    assert empty.above_before_bytes < 20 * 2**20, empty
    assert big.samples >= 2
