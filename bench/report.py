"""The results: a table on stdout, JSON in ``bench/results/``."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
E2E_RATIO_TARGET = 1.0
VERIFY_TARGET_S = 3.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def _get(doc: dict[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


#: The SDK's batching clients against raw HTTP clients under the same load.
SDK_RATIO_TARGET = 0.9
#: Issue 7: the tree builder costs ingest at most this much end to end.
TREE_OVERHEAD_TARGET = 0.10


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def targets(res: dict[str, Any]) -> dict[str, Any]:
    ours, base = (
        _get(res, "chainlog", "e2e_events_per_s"),
        _get(res, "baseline", "e2e_events_per_s"),
    )
    ratio = ours / base if ours and base else None
    verify_s = _get(res, "verify", "best_s")
    verify_ok = _get(res, "verify", "ok")
    return {
        "e2e_ratio": ratio,
        "e2e_ratio_target": E2E_RATIO_TARGET,
        "e2e_ratio_met": ratio >= E2E_RATIO_TARGET if ratio is not None else None,
        "verify_s": verify_s,
        "verify_target_s": VERIFY_TARGET_S,
        "verify_met": verify_s < VERIFY_TARGET_S and bool(verify_ok) if verify_s else None,
        "sdk_ratio": _ratio(_get(res, "sdk", "e2e_events_per_s"), ours),
        "sdk_ratio_same_guarantee": _ratio(
            _get(res, "sdk", "acked_events_per_s"),
            _get(res, "sdk", "raw_with_keys", "acked_events_per_s"),
        ),
        "sdk_ratio_target": SDK_RATIO_TARGET,
        "export_csv_s": _get(res, "export", "csv", "seconds"),
        "export_target_s": _get(res, "export", "target_s"),
        "export_met": _get(res, "export", "met"),
        "tree_overhead": _get(res, "proofs", "ingest", "overhead"),
        "explorer_worst_p99_ms": _get(res, "explorer", "worst_p99_ms"),
        "explorer_met": _get(res, "explorer", "met"),
        "tree_overhead_target": TREE_OVERHEAD_TARGET,
    }


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:,.{digits}f}"


def _verdict(met: bool | None, text: str) -> str:
    return text if met is None else f"{text}: {'PASS' if met else 'FAIL'}"


def table(res: dict[str, Any]) -> str:
    t = res.get("targets") or {}
    systems = (res.get("chainlog"), res.get("baseline"))
    rows: list[tuple[str, str, str, str]] = []

    def both(label: str, *path: str, digits: int = 0, target: str = "") -> None:
        a, b = (_n(_get(s, *path), digits) for s in systems)
        rows.append((label, a, b, target))

    def p50_p99(label: str, name: str, digits: int = 0) -> None:
        a, b = (
            f"{_n(_get(s, name, 'p50_ms'), digits)} / {_n(_get(s, name, 'p99_ms'), digits)}"
            for s in systems
        )
        rows.append((label, a, b, ""))

    def ours(label: str, phase: str, *path: str, digits: int = 0, target: str = "") -> None:
        if phase in res:
            rows.append((label, _n(_get(res[phase], *path), digits), "", target))

    ratio = f"{t['e2e_ratio']:.2f}" if t.get("e2e_ratio") else "-"
    both(
        "end-to-end events/s (send → queryable)",
        "e2e_events_per_s",
        target=_verdict(t.get("e2e_ratio_met"), f"ratio ≥ {E2E_RATIO_TARGET}, is {ratio}"),
    )
    both("acked events/s", "acked_events_per_s")
    p50_p99("ack latency p50 / p99, ms", "ack_latency", 1)
    p50_p99("freshness ack → queryable p50 / p99, ms", "freshness")
    st = res.get("steady")
    if st and "freshness" in st:
        offered = _n(_get(st, "offered_events_per_s"))
        rows.append(
            (
                f"freshness at a steady {offered} events/s (half), p50 / p99, ms",
                f"{_n(_get(st, 'freshness', 'p50_ms'))} / {_n(_get(st, 'freshness', 'p99_ms'))}",
                "",
                "",
            )
        )
    both("backlog at end of load, events", "backlog_at_load_end")
    both("drain after load, s", "drain_after_load_s", digits=2)
    both("all acked events queryable", "all_queryable")
    both("request errors", "errors")
    both("load generator CPU, % of one core", "generator_cpu_pct")
    ch = res.get("chainer")
    ours(f"chainer events/s (drain of {_n(_get(ch, 'queued_events'))})", "chainer", "events_per_s")
    ours("ingest events/s, chainer paused", "chainer", "ingest_only", "acked_events_per_s")
    ours("chainer restart → all queryable, s", "chainer", "restart_to_all_queryable_s", digits=1)
    ours(
        f"chainer events/s, 2 instances over {settings_partitions(res)} partitions",
        "chainer_x2",
        "events_per_s",
    )
    for stage, what in (("enricher", "GeoIP"), ("alerter", "5 rules")):
        st = res.get(stage)
        ours(
            f"{stage} events/s ({what}, drain of {_n(_get(st, 'queued_events'))})",
            stage,
            "events_per_s",
        )
    ours("streamer events/s to a local _bulk receiver", "streamer", "alone", "events_per_s")
    ours("streamer events/s, beside a dead destination", "streamer", "beside_dead", "events_per_s")
    v = res.get("verify")
    ours(
        f"verify {_n(_get(v, 'events'))} events, s (best of {len(_get(v, 'seconds') or [])})",
        "verify",
        "best_s",
        digits=2,
        target=_verdict(t.get("verify_met"), f"< {VERIFY_TARGET_S:.0f} s and valid"),
    )
    sdk_ratio = t.get("sdk_ratio")
    ours(
        "SDK clients (batching, idempotency keys), end-to-end events/s",
        "sdk",
        "e2e_events_per_s",
        target=_verdict(
            None if sdk_ratio is None else sdk_ratio >= SDK_RATIO_TARGET,
            f"≥ {SDK_RATIO_TARGET:.0%} of raw HTTP, is {sdk_ratio:.2f}" if sdk_ratio else "",
        ),
    )
    same = t.get("sdk_ratio_same_guarantee")
    ours(
        "raw HTTP with an idempotency key per event, acked events/s",
        "sdk",
        "raw_with_keys",
        "acked_events_per_s",
        target=_verdict(
            None if same is None else same >= SDK_RATIO_TARGET,
            f"SDK acked ≥ {SDK_RATIO_TARGET:.0%} of it, is {same:.2f}" if same else "",
        ),
    )
    e = res.get("export")
    ours(
        f"export {_n(_get(e, 'events'))} events as CSV, s",
        "export",
        "csv",
        "seconds",
        digits=2,
        target=_verdict(t.get("export_met"), f"< {_n(_get(e, 'target_s'))} s"),
    )
    ours("export as JSON Lines, s", "export", "jsonl", "seconds", digits=2)
    ours("verify-export of that CSV (offline), s", "export", "verify_csv", "seconds", digits=2)
    pr = res.get("proofs")
    ours(
        f"Merkle tree of {_n(_get(pr, 'tree_build', 'leaves'))} events built, leaves/s",
        "proofs",
        "tree_build",
        "leaves_per_s",
    )
    for kind in ("inclusion", "consistency"):
        if pr and kind in pr:
            rows.append(
                (
                    f"{kind} proof at {_n(pr.get('tree_size'))} via the API, p50 / p99 ms",
                    f"{_n(pr[kind].get('p50_ms'), 1)} / {_n(pr[kind].get('p99_ms'), 1)}",
                    "",
                    f"{pr[kind].get('verified')}/{pr[kind].get('of')} verified",
                )
            )
    ours("checkpoint signing, µs each", "proofs", "signing", "us_per_checkpoint", digits=1)
    overhead = _get(pr, "ingest", "overhead")
    ours(
        "ingest e2e events/s with the tree builder on (mean of runs)",
        "proofs",
        "ingest",
        "tree_on_mean",
        target=_verdict(
            None if overhead is None else overhead <= TREE_OVERHEAD_TARGET,
            f"overhead ≤ {TREE_OVERHEAD_TARGET:.0%}, is {overhead:.1%}"
            if overhead is not None
            else "",
        ),
    )
    ours("... with it off (mean of runs)", "proofs", "ingest", "tree_off_mean")
    ex: dict[str, Any] = res.get("explorer") or {}
    for label, q in ex.get("queries", {}).items():
        rows.append(
            (
                f"explorer on {_n(ex.get('events'))} events: {label}, p50 / p99 ms",
                f"{_n(q.get('p50_ms'), 1)} / {_n(q.get('p99_ms'), 1)}",
                "",
                _verdict(
                    q.get("p99_ms", 1e9) < ex.get("target_p99_ms", 0),
                    f"p99 < {ex.get('target_p99_ms'):.0f} ms",
                )
                if "not what the console sends" not in label
                else "(for the record)",
            )
        )
    header = ("metric", "chainlog", "baseline", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    fmt = " | ".join(f"{{:{'>' if i in (1, 2) else '<'}{w}}}" for i, w in enumerate(widths))
    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), rule, *(fmt.format(*r) for r in rows)])


def settings_partitions(res: dict[str, Any]) -> str:
    return str(res.get("config", {}).get("partitions", 12))


def write(res: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    blob = orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    path = RESULTS / f"{stamp}.json"
    path.write_bytes(blob)
    (RESULTS / "latest.json").write_bytes(blob)
    return path
