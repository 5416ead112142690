"""How big and how long: the full run `make bench` does, and `--quick` for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    """Sizes and time budgets of one bench run; `workdir` holds its generated policies."""

    workdir: Path
    sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000)
    engine_requests: int = 2_000  # distinct requests per cell (never repeated: no cache hits)
    warmup_requests: int = 100
    authz_budget_s: float = 1.5
    pycasbin_budget_s: float = 5.0
    pycasbin_max_samples: int = 300
    token_count: int = 300
    rpc_seconds: float = 3.0
    rpc_warmup_s: float = 0.5
    rpc_threads: int = 8
    rpc_channels: int = 4
    rpc_policy_lines: int = 1_000
    rpc_rounds: int = 4  # interleaved runs per compared figure (A B B A)
    load_rounds: int = 2  # fresh-process loads per engine and size (the fastest counts)
    plan_rows: int = 1_000_000  # rows of the PostgreSQL table the plan's query filters
    plan_query_rounds: int = 7  # interleaved runs of each query (the median counts)
    peer_sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000)
    peer_sample: int = 200  # requests every service answers before its row is timed
    peer_sample_budget_s: float = 20.0  # per service; a slow one is compared on fewer
    peer_row_budget_s: float = 30.0  # a slow service's calls are capped to about this much work
    peer_rounds: int = 2  # interleaved runs per service where all are fast
    memory_lines: int = 100_000
    memory_decisions: int = 1_000_000  # N: resident memory after N and after 2N distinct decisions
    memory_pycasbin_decisions: int = 20
    overload_max_rpcs: int = 16  # AUTHZ_MAX_CONCURRENT_RPCS of the overload run: the thread pool's size
    overload_max_queue_s: float = 0.005  # AUTHZ_MAX_QUEUE_SECONDS of the overload run
    overload_max_pending: int = 8  # AUTHZ_MAX_PENDING_CALLS of the other overload run

    @classmethod
    def quick(cls, workdir: Path) -> Profile:
        """Small sizes and short durations: checks the harness works, not the figures."""
        return cls(
            workdir,
            sizes=(100, 1_000),
            engine_requests=200,
            warmup_requests=20,
            authz_budget_s=0.2,
            pycasbin_budget_s=0.3,
            pycasbin_max_samples=50,
            token_count=30,
            rpc_seconds=0.5,
            rpc_warmup_s=0.1,
            rpc_threads=4,
            rpc_channels=2,
            rpc_policy_lines=200,
            rpc_rounds=1,
            load_rounds=1,
            plan_rows=10_000,
            plan_query_rounds=3,
            peer_sizes=(100,),
            peer_sample=20,
            peer_sample_budget_s=2.0,
            peer_row_budget_s=2.0,
            peer_rounds=1,
            memory_lines=1_000,
            memory_decisions=20_000,
            memory_pycasbin_decisions=5,
            overload_max_queue_s=0.02,  # a loose budget: the smoke test wants calls answered at 2x
            overload_max_pending=64,
        )

    @property
    def growth_sizes(self) -> tuple[int, int]:
        """The two sizes the growth ratio compares: 1,000 and the largest."""
        return (1_000 if 1_000 in self.sizes else self.sizes[0]), self.sizes[-1]
