#!/usr/bin/env python3
"""Who ends a thread's lock waits: reads `perf script` output of `sched:sched_switch` and
`sched:sched_wakeup` events recorded with call graphs for a whole process, and prints,
for each time the thread went to sleep in a contended lock (`*_contended` in its stack)
for at least MIN_MS, how long it slept, where, and the stack of the thread that woke it
(the one that released the lock, at that moment), then what that thread was doing
meanwhile: its own switch-outs inside the wait (e.g. an fsync under the lock, or a long
free interrupted by preemption).

    perf record -e sched:sched_switch -e sched:sched_wakeup --call-graph dwarf,16384 \\
        -p <vigie pid> -o w.data -- sleep 15
    perf script -i w.data --no-inline -F comm,tid,time,event,trace,ip,sym > w.txt
    python3 benches/wakers.py w.txt <tid> [MIN_MS]

(`<tid>`: the `timely:work-0` line of `/proc/<vigie pid>/task/*/comm`.)
"""
import re
import sys

HEADER = re.compile(r"^(\S.*?)\s+(\d+)\s+([\d.]+):\s+(sched:\S+):\s+(.*)$")
SKIP = ("__schedule", "schedule", "futex", "syscall", "entry_SYSCALL", "do_syscall",
        "x64_sys", "ttwu", "try_to_wake", "wake_up", "irqentry", "asm_", "[unknown]")


def events(path):
    out, cur = [], None
    for line in open(path):
        if not line.strip():
            continue
        m = HEADER.match(line)
        if m:
            cur = {"comm": m.group(1), "tid": m.group(2), "t": float(m.group(3)),
                   "event": m.group(4), "trace": m.group(5), "frames": []}
            out.append(cur)
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and cur is not None:
            cur["frames"].append(parts[1][:110])
    return out


def user(frames, n):
    return [f for f in frames if not any(s in f for s in SKIP)][:n]


def main():
    path, tid = sys.argv[1], sys.argv[2]
    min_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    evs = events(path)
    woken = re.compile(r"pid=%s\b" % tid)
    for i, e in enumerate(evs):
        if (e["event"] != "sched:sched_switch" or e["tid"] != tid
                or "prev_state=S" not in e["trace"]
                or not any("contended" in f for f in e["frames"])):
            continue
        for f in evs[i + 1:]:
            if f["event"] == "sched:sched_wakeup" and woken.search(f["trace"]):
                ms = (f["t"] - e["t"]) * 1000
                if ms >= min_ms:
                    print(f"{ms:6.1f} ms in {' < '.join(user(e['frames'], 3))}")
                    print(f"    woken by {f['comm']} ({f['tid']}): "
                          f"{' < '.join(user(f['frames'], 8))}")
                    for g in evs:
                        if (g["tid"] == f["tid"] and g["event"] == "sched:sched_switch"
                                and e["t"] <= g["t"] <= f["t"]):
                            state = re.search(r"prev_state=(\S+)", g["trace"])
                            print(f"      +{(g['t'] - e['t']) * 1000:6.1f} ms "
                                  f"{state.group(1) if state else '?'} "
                                  f"{' < '.join(user(g['frames'], 6))}")
                break


if __name__ == "__main__":
    main()
