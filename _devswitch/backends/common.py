"""What the backends share: NVML memory and the too-late hint."""

from __future__ import annotations

TOO_LATE_HINT = (
    "make 'import devswitch' the first import of the script, run it unmodified with "
    "'devswitch run script.py', or set DEVSWITCH_* variables before Python starts"
)


def nvml_memory() -> dict[int, int]:
    """GPU memory per NVML index when nvidia-ml-py is installed; {} otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no driver: memory is simply not shown
        return {}
    try:
        return {
            i: int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total)
            for i in range(pynvml.nvmlDeviceGetCount())
        }
    except Exception:
        return {}
    finally:
        pynvml.nvmlShutdown()


class NoPool:
    """``Backend.cpu_pool`` of a framework that takes its CPU memory from C's allocator: nothing to read."""

    def start(self) -> None:
        """Nothing to note."""

    def peak(self) -> int:
        return 0


def no_pool() -> NoPool:
    return NoPool()


class NoHostPool:
    """For a runner whose framework takes its CPU memory from C's allocator, which the benchmark empties first
    (memory.release_free_memory): no pool of its own to read (``BenchmarkRunner.host_pool_*``)."""

    def host_pool_start(self) -> None:
        """Nothing to note."""

    def host_pool_peak(self) -> int:
        return 0
