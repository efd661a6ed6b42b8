#!/usr/bin/env python3
"""Where a thread waits: reads `perf script` output of `sched:sched_switch` events recorded
with call graphs for one thread, and prints its switch-outs grouped by stack, weighted by
the time to its next switch-out (an upper bound of the time off CPU plus the next run),
then every wait inside vigie's mention store.

    perf record -e sched:sched_switch --call-graph dwarf,16384 -t <tid> -o w.data -- sleep 20
    perf script -i w.data --no-inline -F time,trace,ip,sym > w.txt
    python3 benches/offcpu.py w.txt

(`<tid>`: the `timely:work-0` line of `/proc/<vigie pid>/task/*/comm`.)
"""
import collections
import re
import sys

SKIP = ("__schedule", "schedule", "entry_SYSCALL", "do_syscall", "x64_sys", "irqentry",
        "asm_", "ret_from", "[unknown]")


def events(path):
    out, cur = [], None
    for line in open(path):
        if not line.strip():
            continue
        m = re.search(r"^\s*([\d.]+): .*prev_state=(\S+)", line)
        if m:
            cur = {"t": float(m.group(1)), "state": m.group(2), "frames": []}
            out.append(cur)
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and cur is not None:
            cur["frames"].append(parts[1][:120])
    return out


def short(frames, depth=6):
    out = []
    for f in frames:
        if any(s in f for s in SKIP):
            continue
        f = re.sub(r"<.*", "", f) or f
        if not out or out[-1] != f:
            out.append(f)
        if len(out) >= depth:
            break
    return " < ".join(out)


def main():
    evs = events(sys.argv[1])
    if len(evs) < 2:
        sys.exit("no sched_switch events")
    span = evs[-1]["t"] - evs[0]["t"]
    by_stack = collections.defaultdict(lambda: [0, 0.0, 0.0])
    store = []
    for e, nxt in zip(evs, evs[1:]):
        gap = nxt["t"] - e["t"]
        row = by_stack[(e["state"], short(e["frames"]))]
        row[0] += 1
        row[1] += gap
        row[2] = max(row[2], gap)
        if e["state"][0] in "SD" and any("MentionStore" in f for f in e["frames"]):
            lock = next((f for f in e["frames"] if "contended" in f or "io_schedule" in f), "?")
            caller = next((f for f in e["frames"] if "fjall::" in f or "lsm_tree::" in f), "?")
            store.append((gap, e["state"], lock[:60], caller[:80]))
    print(f"{len(evs)} switch-outs over {span:.1f} s")
    for (state, stack), (n, total, most) in sorted(by_stack.items(), key=lambda x: -x[1][1])[:15]:
        print(f"{total:7.2f} s  n={n:5d}  max={most * 1000:4.0f} ms  {state} | {stack}")
    print(f"\nblocked inside the mention store: {len(store)} times, "
          f"{sum(s[0] for s in store) * 1000:.0f} ms in all")
    for gap, state, lock, caller in sorted(store, reverse=True)[:15]:
        print(f"  {gap * 1000:4.0f} ms {state} {lock} | {caller}")


if __name__ == "__main__":
    main()
