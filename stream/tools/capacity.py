"""The capacity plan: measured per-transaction costs scaled to a target rate. Pure arithmetic.

`fraudstream capacity` reads a load test and a demo run (capacity_inputs.py) into
`Measured`, and `plan` turns them, with the stated `Assumptions` and `Prices`, into a
`CapacityPlan`. Sizing is for the design rate, peak × spike factor (2× by default):

- workers = ⌈rate / one worker's sustainable rate⌉ (at average, peak and design rate);
  partitions = workers at the design rate, since a partition feeds one worker of a group
  and adding partitions later moves cards to other partitions (and workers);
- worker cores busy = rate × worker CPU seconds per transaction; each worker process is
  given `worker_vcpus` (one Python event loop uses at most about one core);
- Redis memory = cards × (fixed + per_event × events per card in the card retention)
  + merchant events retained × bytes each + transactions within the `seen`/`score` TTL ×
  their bytes; shards = the larger of memory / `redis_max_gib_per_shard` and Redis cores
  busy / `redis_cpu_target` (Redis runs commands on one thread);
- broker write = rate × Σ topics (records per transaction × bytes per record); retention
  storage = average rate × that × retention × replication.

`plan_figures` is the JSON; `format_markdown` renders that same dict, so the two agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 2**30
GB = 10**9
SECONDS_PER_DAY = 86_400
#: The reference design's own arithmetic (issue 13): 1,000 records per shard per second.
REFERENCE_RECORDS_PER_SHARD_S = 1_000.0


@dataclass(frozen=True)
class Source:
    """A file an input came from and the command that writes such a file."""

    path: str
    command: str


@dataclass(frozen=True)
class Measured:
    """Per-transaction figures of this code, each from a `Source` (see capacity_inputs.py)."""

    worker_tps: float  # one worker's sustainable rate, transactions/s
    within_budget: bool  # False: the worker kept up at that rate but its p99 missed the budget
    p99_ms: float | None  # end-to-end p99 at that rate
    budget_ms: float
    worker_cpu_s_per_txn: float
    redis_cpu_s_per_txn: float
    redis_commands_per_txn: float
    card_bytes_fixed: float
    card_bytes_per_event: float
    merchant_bytes_per_event: float
    txn_bytes_per_txn: float  # the transaction's own keys (`seen`, `score`)
    txn_key_ttl_s: float
    card_retention_s: float
    merchant_retention_s: float
    topic_bytes_per_txn: dict[str, float]  # topic role -> records per txn × bytes per record
    sources: dict[str, Source] = field(default_factory=dict)  # "loadtest", "demo"


@dataclass(frozen=True)
class Assumptions:
    """Inputs no run here can measure; each default is a stated choice, not a finding."""

    spike_factor: float = 2.0  # headroom over peak (issue 13)
    cards: int = 500_000_000  # 1 B transactions/day at 2 per card per day (the generator's)
    broker_retention_days: float = 7.0  # Apache Kafka's default log.retention.hours = 168
    replication: int = 3  # the usual production replication factor for Kafka topics
    broker_mb_s_per_node: float = 50.0  # replicated write a broker node takes: assumption
    broker_min_nodes: int = 3  # one per replica
    broker_vcpus: float = 4.0
    broker_ram_gib: float = 16.0
    worker_vcpus: float = 1.0  # one Python process: one event loop, about one core at most
    worker_ram_gib: float = 1.0  # assumption: not measured here
    redis_cpu_target: float = 0.5  # Redis main thread kept half busy, for spikes and forks
    redis_max_gib_per_shard: float = 25.0  # assumption: keeps resync and failover short
    redis_memory_fill: float = 0.75  # dataset / RAM: room for fragmentation and forks
    redis_replicas: int = 1  # per shard, for failover
    redis_vcpus_per_shard: float = 2.0  # the command thread plus I/O and persistence


@dataclass(frozen=True)
class Prices:
    """Monthly list prices; assumptions (round on-demand cloud figures), pass your own."""

    vcpu_month: float = 25.0
    ram_gib_month: float = 3.5
    storage_gb_month: float = 0.08


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly: float


@dataclass(frozen=True)
class CapacityPlan:
    peak_tps: float
    avg_tps: float
    design_tps: float
    workers_avg: int
    workers_peak: int
    workers_design: int
    partitions: int
    worker_cores_busy_design: float
    worker_vcpus: float
    redis_commands_per_s_design: float
    redis_cores_busy_design: float
    redis_shards_for_cpu: int
    redis_shards_for_memory: int
    redis_shards: int
    events_per_card: float
    bytes_per_card: float
    redis_gib: dict[str, float]  # cards, merchants, txn_keys, total
    broker_bytes_per_txn: float
    broker_write_mb_s_design: float
    broker_write_mb_s_replicated: float
    broker_nodes: int
    broker_storage_gb: float
    reference_shards_at_peak: int
    cost: list[CostLine]
    monthly_total: float


class CapacityInputError(ValueError):
    """An input file is missing or lacks a figure; the message names the command to run."""


def units_for(amount: float, per_unit: float, minimum: int = 1) -> int:
    """Whole units (workers, shards, broker nodes) of `per_unit` each that carry `amount`,
    at least `minimum`; a ratio a rounding error above a whole number adds no unit."""
    return max(minimum, math.ceil(amount / per_unit - 1e-9))


def plan(
    peak_tps: float, avg_tps: float, measured: Measured,
    assumptions: Assumptions = Assumptions(), prices: Prices = Prices(),
) -> CapacityPlan:  # fmt: skip
    """The plan for `peak_tps` (sized at peak × spike factor) and `avg_tps` (storage)."""
    if not 0 < avg_tps <= peak_tps or measured.worker_tps <= 0 or assumptions.cards < 1:
        raise CapacityInputError("need 0 < --avg-tps <= --peak-tps, cards >= 1, a worker rate > 0")
    a = assumptions
    design = peak_tps * a.spike_factor
    workers_design = units_for(design, measured.worker_tps)
    events_per_card = avg_tps * measured.card_retention_s / a.cards
    bytes_per_card = measured.card_bytes_fixed + measured.card_bytes_per_event * events_per_card
    redis_bytes = {
        "cards": a.cards * bytes_per_card,
        "merchants": avg_tps * measured.merchant_retention_s * measured.merchant_bytes_per_event,
        "txn_keys": avg_tps * measured.txn_key_ttl_s * measured.txn_bytes_per_txn,
    }
    redis_gib = {name: value / GIB for name, value in redis_bytes.items()}
    redis_gib["total"] = sum(redis_gib.values())
    redis_cores = design * measured.redis_cpu_s_per_txn
    shards_cpu = units_for(redis_cores, a.redis_cpu_target)
    shards_memory = units_for(redis_gib["total"], a.redis_max_gib_per_shard)
    shards = max(shards_cpu, shards_memory)
    bytes_per_txn = sum(measured.topic_bytes_per_txn.values())
    write_mb_s = design * bytes_per_txn / 1e6
    replicated = write_mb_s * a.replication
    brokers = units_for(replicated, a.broker_mb_s_per_node, a.broker_min_nodes)
    retention_s = a.broker_retention_days * SECONDS_PER_DAY
    storage_gb = avg_tps * bytes_per_txn * retention_s * a.replication / GB
    redis_nodes = shards * (1 + a.redis_replicas)
    cost = _cost_lines(workers_design, redis_nodes, redis_gib["total"], brokers, storage_gb,
                       a, prices)  # fmt: skip
    return CapacityPlan(
        peak_tps=peak_tps, avg_tps=avg_tps, design_tps=design,
        workers_avg=units_for(avg_tps, measured.worker_tps),
        workers_peak=units_for(peak_tps, measured.worker_tps),
        workers_design=workers_design, partitions=workers_design,
        worker_cores_busy_design=design * measured.worker_cpu_s_per_txn,
        worker_vcpus=workers_design * a.worker_vcpus,
        redis_commands_per_s_design=design * measured.redis_commands_per_txn,
        redis_cores_busy_design=redis_cores, redis_shards_for_cpu=shards_cpu,
        redis_shards_for_memory=shards_memory, redis_shards=shards,
        events_per_card=events_per_card, bytes_per_card=bytes_per_card, redis_gib=redis_gib,
        broker_bytes_per_txn=bytes_per_txn, broker_write_mb_s_design=write_mb_s,
        broker_write_mb_s_replicated=replicated, broker_nodes=brokers,
        broker_storage_gb=storage_gb,
        reference_shards_at_peak=math.ceil(peak_tps / REFERENCE_RECORDS_PER_SHARD_S),
        cost=cost, monthly_total=sum(line.monthly for line in cost),
    )  # fmt: skip


def _cost_lines(
    workers: int, redis_nodes: int, redis_dataset_gib: float, brokers: int, storage_gb: float,
    a: Assumptions, prices: Prices,
) -> list[CostLine]:  # fmt: skip
    """One line per resource, always provisioned for the design rate (no autoscaling)."""
    redis_ram = redis_dataset_gib * (1 + a.redis_replicas) / a.redis_memory_fill
    rows = [
        ("worker vCPUs", workers * a.worker_vcpus, "vCPU", prices.vcpu_month),
        ("worker RAM", workers * a.worker_ram_gib, "GiB", prices.ram_gib_month),
        ("Redis vCPUs (masters + replicas)", redis_nodes * a.redis_vcpus_per_shard, "vCPU",
         prices.vcpu_month),
        ("Redis RAM (masters + replicas, at the fill)", redis_ram, "GiB", prices.ram_gib_month),
        ("broker vCPUs", brokers * a.broker_vcpus, "vCPU", prices.vcpu_month),
        ("broker RAM", brokers * a.broker_ram_gib, "GiB", prices.ram_gib_month),
        ("broker retention storage (replicated)", storage_gb, "GB", prices.storage_gb_month),
    ]  # fmt: skip
    return [CostLine(item, qty, unit, price, qty * price) for item, qty, unit, price in rows]


def plan_figures(
    result: CapacityPlan, measured: Measured, assumptions: Assumptions, prices: Prices
) -> dict[str, Any]:
    """The JSON of a plan: the plan, and every input it was computed from."""
    return {
        "plan": asdict(result),
        "measured": asdict(measured),
        "assumptions": asdict(assumptions),
        "prices": asdict(prices),
    }


#: The plan table: (label, key in "plan", format). The Markdown is made from the JSON.
PLAN_ROWS = [
    ("design rate (peak × spike)", "design_tps", "{:,.0f}/s"),
    ("worker processes at average", "workers_avg", "{:,}"),
    ("worker processes at peak", "workers_peak", "{:,}"),
    ("worker processes at the design rate", "workers_design", "{:,}"),
    ("partitions per topic", "partitions", "{:,}"),
    ("worker cores busy at the design rate", "worker_cores_busy_design", "{:,.1f}"),
    ("worker vCPUs provisioned", "worker_vcpus", "{:,.0f}"),
    ("Redis commands/s at the design rate", "redis_commands_per_s_design", "{:,.0f}"),
    ("Redis cores busy at the design rate", "redis_cores_busy_design", "{:,.1f}"),
    ("Redis shards for CPU", "redis_shards_for_cpu", "{:,}"),
    ("Redis shards for memory", "redis_shards_for_memory", "{:,}"),
    ("Redis shards (masters)", "redis_shards", "{:,}"),
    ("card events in the window, per card", "events_per_card", "{:,.1f}"),
    ("Redis bytes per card", "bytes_per_card", "{:,.0f}"),
    ("broker bytes per transaction (all topics)", "broker_bytes_per_txn", "{:,.0f}"),
    ("broker write at the design rate, MB/s", "broker_write_mb_s_design", "{:,.1f}"),
    ("broker write replicated, MB/s", "broker_write_mb_s_replicated", "{:,.1f}"),
    ("broker nodes", "broker_nodes", "{:,}"),
    ("broker retention storage, GB (replicated)", "broker_storage_gb", "{:,.0f}"),
]


def format_markdown(figures: dict[str, Any]) -> str:
    """The plan, its inputs with their files, and the cost table, from `plan_figures`."""
    p, m, a = figures["plan"], figures["measured"], figures["assumptions"]
    lines = [
        f"# Capacity plan: {p['peak_tps']:,.0f}/s peak, {p['avg_tps']:,.0f}/s average",
        "",
        "## Inputs measured here",
        "",
    ]
    for role, source in m["sources"].items():
        lines.append(f"- {role}: `{source['path']}`, written by `{source['command']}`")
    budget = "within" if m["within_budget"] else "**over**"
    p99 = "n/a" if m["p99_ms"] is None else f"{m['p99_ms']:,.0f} ms"
    lines += [
        "",
        "| figure | value | from |",
        "|---|---:|---|",
        f"| one worker's sustainable rate | {m['worker_tps']:,.0f}/s | loadtest (p99 {p99}, "
        f"{budget} the {m['budget_ms']:g} ms budget) |",
        f"| worker CPU per 1,000 transactions | {m['worker_cpu_s_per_txn'] * 1000:.3f} s "
        "| loadtest |",
        f"| Redis CPU per 1,000 transactions | {m['redis_cpu_s_per_txn'] * 1000:.3f} s "
        "| loadtest |",
        f"| Redis commands per transaction | {m['redis_commands_per_txn']:.2f} | demo |",
        f"| card bytes: fixed + per event | {m['card_bytes_fixed']:,.0f} + "
        f"{m['card_bytes_per_event']:,.1f} | demo |",
        f"| merchant bytes per event | {m['merchant_bytes_per_event']:,.1f} | demo |",
        f"| transaction keys' bytes, TTL | {m['txn_bytes_per_txn']:,.0f}, "
        f"{m['txn_key_ttl_s'] / SECONDS_PER_DAY:.0f} days | demo |",
    ]
    for role, size in m["topic_bytes_per_txn"].items():
        lines.append(f"| `{role}` topic bytes per transaction | {size:,.1f} | demo |")
    if not m["within_budget"]:
        lines += ["", f"**The worker missed the {m['budget_ms']:g} ms p99 budget at every "
                  "measured rate; this plan sizes for throughput at the highest rate it kept "
                  "up with, and does not meet the latency target.**"]  # fmt: skip
    lines += ["", "## Plan", "", "| | |", "|---|---:|"]
    lines += [f"| {label} | {fmt.format(p[key])} |" for label, key, fmt in PLAN_ROWS]
    lines += ["", "Redis memory, GiB (dataset, masters only):", "", "| part | GiB |", "|---|---:|"]
    lines += [f"| {part} | {gib:,.1f} |" for part, gib in p["redis_gib"].items()]
    lines += [
        "",
        f"Reference arithmetic (issue 13): {p['peak_tps']:,.0f}/s at "
        f"{REFERENCE_RECORDS_PER_SHARD_S:,.0f} records per shard per second = "
        f"{p['reference_shards_at_peak']:,} shards at peak; measured here: "
        f"{p['workers_peak']:,} workers at peak, {p['workers_design']:,} at the design rate.",
        "",
        "## Monthly cost (provisioned for the design rate)",
        "",
        "| item | quantity | unit | $/unit-month | $/month |",
        "|---|---:|---|---:|---:|",
    ]
    for line in p["cost"]:
        lines.append(
            f"| {line['item']} | {line['quantity']:,.1f} | {line['unit']} | "
            f"{line['unit_price']:,.2f} | {line['monthly']:,.0f} |"
        )
    lines += [f"| **total** | | | | **{p['monthly_total']:,.0f}** |", "", "## Assumptions", ""]
    lines += [f"- `{name}` = {value:,}" if isinstance(value, int) else f"- `{name}` = {value:g}"
              for name, value in a.items()]  # fmt: skip
    lines += [f"- price `{name}` = ${value:g}" for name, value in figures["prices"].items()]
    lines += ["", "Defaults are stated choices (stream/tools/capacity.py says why each), not "
              "measurements; override them with the command's flags.", ""]  # fmt: skip
    return "\n".join(lines)
