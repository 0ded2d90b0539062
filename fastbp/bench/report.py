"""Presenting results: the text table, the JSON document and the optional plot.

A result row is a plain dict (see ``cli.new_row``); rows with ``status == "ok"``
carry timings, the rest say why they have none ("not installed", "WRONG", ...).
"""
import json

from .workloads import FORWARD_ONLY, IMPLEMENTATIONS, OUTPUT_TOL, WORKLOADS

JSON_SCHEMA = "fastbp-bench/1"


def fmt_us(us):
    if us < 10:
        return f"{us:.2f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def fmt_seconds(s):
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_ratio(r):
    if r < 10:
        return f"{r:.2f}x"
    if r < 100:
        return f"{r:.1f}x"
    return f"{r:.0f}x"


def implementations_in(rows):
    """Implementation labels: fastbp, reference, torch, jax, then reruns ("fastbp@auto")."""
    seen = list(dict.fromkeys(row["implementation"] for row in rows))

    def rank(label):
        base = label.split("@")[0]
        known = IMPLEMENTATIONS.index(base) if base in IMPLEMENTATIONS else len(IMPLEMENTATIONS)
        return ("@" in label, known, seen.index(label))
    return sorted(seen, key=rank)


def add_ratios(rows):
    """row["ratios"][other] = other's median / this row's median, within a workload and size."""
    for row in rows:
        row["ratios"] = {}
        if row["status"] != "ok":
            continue
        for other in rows:
            if (other is not row and other["status"] == "ok"
                    and other["workload"] == row["workload"] and other["label"] == row["label"]):
                row["ratios"][other["implementation"]] = other["median_us"] / row["median_us"]


def _check_cell(row):
    check = row.get("grad_check")
    if not check:
        return "-"
    verdict = "ok" if check["ok"] else "WRONG"
    return f"{verdict} {check['max_rel_error']:.0e}"


def table(rows):
    """The results as aligned text lines (the ratio columns follow the implementations)."""
    # a ratio column for every implementation that produced a number
    impls = implementations_in([r for r in rows if r["status"] == "ok"])
    header = ["workload", "size", "implementation", "median µs", "(min–max)", "GFLOP/s",
              "ceiling", "first call", "grad check"] + [f"vs {i}" for i in impls]
    right = {3, 4, 5, 6, 7} | set(range(9, len(header)))
    body = []
    for row in rows:
        cells = [row["workload"], row["label"], row["implementation"]]
        if row["status"] == "ok":
            cells += [fmt_us(row["median_us"]),
                      f"({fmt_us(row['min_us'])}–{fmt_us(row['max_us'])})",
                      f"{row['gflops']:.1f}",
                      f"{100 * row['ceiling_fraction']:.0f}%" if row["ceiling_fraction"] else "-",
                      fmt_seconds(row["first_call_s"]) if row["first_call_s"] is not None else "-",
                      _check_cell(row)]
            cells += [fmt_ratio(row["ratios"][i]) if i in row["ratios"] else ""
                      for i in impls]
            body.append(cells)
        else:
            body.append(cells + [None, row["status"]])
    widths = [len(h) for h in header]
    for cells in body:
        if cells[3] is None:   # a status row: only the first three columns align
            for k in range(3):
                widths[k] = max(widths[k], len(cells[k]))
            continue
        for k, c in enumerate(cells):
            widths[k] = max(widths[k], len(c))

    def line(cells):
        return "  ".join(c.rjust(widths[k]) if k in right else c.ljust(widths[k])
                         for k, c in enumerate(cells)).rstrip()

    out = [line(header)]
    previous = None
    for cells in body:
        if previous is not None and cells[0] != previous:
            out.append("")
        previous = cells[0]
        if cells[3] is None:
            out.append(line(cells[:3]).ljust(sum(widths[:3]) + 4) + "  " + cells[4])
        else:
            out.append(line(cells))
    return out


def row_notes(rows):
    """The details and notes of the rows, each said once with the rows it concerns."""
    grouped = {}
    for row in rows:
        text = row["detail"] if row["status"] != "ok" else row.get("note")
        if text:
            where = grouped.setdefault((row["implementation"], text), [])
            size = f"{row['workload']} {row['label']}"
            where.append(size)
    out = []
    for (impl, text), where in grouped.items():
        scope = where if len(where) == 1 else dict.fromkeys(w.split()[0] for w in where)
        out.append(f"{impl} ({', '.join(scope)}): {text}")
    return out


def legend(doc, workloads=tuple(WORKLOADS)):
    ceiling = doc.get("gemm_ceiling")
    lines = [
        "median µs: per step (forward + backward, every gradient): the median over samples",
        "  (each a calibrated loop of calls, after warm-up), taken in rounds that alternate",
        "  the implementations; (min–max) across the samples.",
        "GFLOP/s: matmul work only (2·m·n·k per product) over the median time.",
    ]
    if ceiling:
        when = (f" (best of start {ceiling['gflops_start']:.1f} and end "
                f"{ceiling['gflops_end']:.1f})" if "gflops_end" in ceiling else "")
        lines.append(f"ceiling: that rate as a fraction of {ceiling['routine']} n={ceiling['n']} "
                     f"through SciPy's BLAS on this machine: {ceiling['gflops']:.1f} GFLOP/s"
                     f"{when}.")
    lines += [
        "first call: the first step, timed apart (JAX compilation, oneDNN's first call).",
        "grad check: worst norm-wise relative gradient error against fastbp (fastbp itself:",
        "  against the NumPy reference); a row over tolerance is WRONG and not timed.",
    ]
    inference = [w for w in workloads if w in FORWARD_ONLY]
    if inference:
        tol = " and ".join(f"{t:.0e} in {dt}" for dt, t in OUTPUT_TOL.items())
        lines += [f"  {', '.join(inference)}: a forward pass, timed alone; its check compares "
                  f"the outputs instead, to {tol}."]
    lines.append("vs X: X's median / this row's median (above 1: this row is faster than X).")
    if any(r["implementation"].startswith("fastbp@1thread") for r in doc.get("results", ())):
        lines += ["fastbp@1thread (--load): fastbp's own step with its team at one thread, timed in",
                  "  the same rounds under the same load; its check: the team's results, bit for bit."]
    for name in workloads:
        lines.append(f"{name}: {WORKLOADS[name]}")
    return lines


def write_json(path, doc):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=False, default=float)
        f.write("\n")


def plot(path, doc):
    """Bars of µs per step (log scale), one panel per workload, one bar per implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["results"] if r["status"] == "ok"]
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    impls = implementations_in(rows)
    if not workloads:
        raise ValueError("nothing was measured: no plot to draw")
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 4.6),
                             squeeze=False)
    width = 0.8 / max(1, len(impls))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, workload in zip(axes[0], workloads):
        mine = [r for r in rows if r["workload"] == workload]
        labels = []
        for r in mine:
            if r["label"] not in labels:
                labels.append(r["label"])
        for k, impl in enumerate(impls):
            xs, ys, lo, hi = [], [], [], []
            for j, label in enumerate(labels):
                for r in mine:
                    if r["label"] == label and r["implementation"] == impl:
                        xs.append(j + (k - (len(impls) - 1) / 2) * width)
                        ys.append(r["median_us"])
                        lo.append(r["median_us"] - r["min_us"])
                        hi.append(r["max_us"] - r["median_us"])
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], label=impl, color=colors[k % len(colors)],
                       capsize=2)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=15, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("µs per step (lower is faster)")
        ax.set_title(workload)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    env = doc["environment"]
    fig.suptitle(f"fastbp bench, {doc['config']['dtype']}, {env['cpu']} "
                 f"({env['usable_cores']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
