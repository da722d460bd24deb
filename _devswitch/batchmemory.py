"""The peak memory of each batch size of one ``benchmark()`` call, and how it was measured, in words: on a GPU
the allocator's peak over the batch size's first steps; on a CPU the process's resident memory above its level
before them (sampled; a framework pool's own peak where that is larger)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .memory import RssSampler, format_size, release_free_memory, resident_bytes

WARM_SAMPLE_S = 0.002  # resident memory is sampled this often over the first call and warm-up (on a CPU)
TIMED_SAMPLE_S = 0.01  # and this often over the timed steps, where a sampling thread must cost next to nothing


@dataclass
class BatchMemory:
    """Per batch size: its peak memory (``peaks``; ``gpu_peaks`` on a GPU) and how it was measured."""

    on_gpu: bool
    runner: Any  # the backend's BenchmarkRunner
    peaks: dict[int, int | None] = field(default_factory=dict)
    gpu_peaks: dict[int, int | None] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    seen: list[int] = field(default_factory=list)  # the batch sizes whose first steps ran, in order
    last: tuple[int, int] | None = None  # (CPU) the last batch size's resident level before it, its pool's peak
    pool_kept: int = 0  # the most that the framework's own pool took for an earlier batch size and still holds
    resident: dict[int, int | None] = field(default_factory=dict)  # (CPU) the resident growth alone, per batch size

    @contextlib.contextmanager
    def first_steps(self, batch: int) -> Iterator[None]:
        """Around a batch size's input, first call and warm-up, where it reaches its peak. On a CPU, what C's
        allocator kept from earlier work is handed back first, so that the level before is what is in use."""
        if self.on_gpu:
            self.runner.reset_peak_memory()
            yield
            self.gpu_peaks[batch] = self.peaks[batch] = self.runner.peak_memory()
            self.sources[batch] = self.runner.peak_memory_source()
        else:
            release_free_memory()
            level = resident_bytes()
            if self.last is not None and level is not None:  # what the pool took for the last batch size, kept
                self.pool_kept = max(self.pool_kept, min(self.last[1], max(0, level - self.last[0])))
            self.runner.host_pool_start()
            with self._sampled(batch, WARM_SAMPLE_S):
                yield
            pool, resident = self.runner.host_pool_peak(), self.resident.get(batch)
            self.last = None if level is None else (level, pool)
            kept = min(self.pool_kept, pool) if resident is not None else 0  # this one may have reused it unseen
            if resident is not None:  # (a batch size measured again keeps its highest figure, never a sum)
                self.peaks[batch] = max(self.peaks.get(batch) or 0, pool, resident + kept)
            self.sources[batch] = self._source(
                batch, pool if resident is not None and pool > resident + kept else 0, kept
            )
        self.seen.append(batch)

    @contextlib.contextmanager
    def timed_steps(self, batch: int) -> Iterator[None]:
        """Around a round of timed steps: sampled sparsely on a CPU; nothing on a GPU."""
        if self.on_gpu:
            yield
        else:
            with self._sampled(batch, TIMED_SAMPLE_S):
                yield

    @contextlib.contextmanager
    def _sampled(self, batch: int, interval_s: float) -> Iterator[None]:
        """Keep the highest resident peak above the level before any block of ``batch``."""
        with RssSampler(interval_s) as peak:
            yield
        for figures in (self.resident, self.peaks):
            known = [p for p in (figures.get(batch), peak.above_before_bytes) if p is not None]
            figures[batch] = max(known) if known else None

    def _source(self, batch: int, pool: int, kept: int = 0) -> str:
        """How the CPU figure of ``batch`` was measured, and when an earlier, larger batch size may hide part of it."""
        how = (
            f"resident memory of the process above its level before this batch size, sampled every "
            f"{WARM_SAMPLE_S * 1000:.0f} ms over the first call and warm-up and every {TIMED_SAMPLE_S * 1000:.0f} "
            "ms over the timed steps (not ru_maxrss)"
        )
        if pool:
            how += (
                f"; here the framework's own memory pool's peak above its use before, {format_size(pool)}, which "
                "is larger: the pool reused memory it had kept from earlier work, unseen by the resident memory"
            )
        elif kept:
            how += (
                f"; plus {format_size(kept)}: the framework's own memory pool took that much for an earlier batch "
                "size of this run and still holds it, and this one may reuse it without resident growth where a "
                "fresh process would grow (so the figure is an upper bound)"
            )
        larger = [b for b in self.seen if b > batch]
        if larger:
            how += (
                f"; measured after batch size {max(larger)}, whose freed memory the allocator may keep: it can "
                "read low (give batch sizes smallest first)"
            )
        return how
