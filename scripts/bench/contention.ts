/**
 * How much CPU the rest of the machine took during a run: other processes, and the hypervisor (steal time,
 * on a virtual machine whose host is busy). On a small machine a test suite running alongside, or a busy
 * host, halves the figures, so each run records both, and the report says when figures were disturbed.
 * And how much the target itself used: its CPU per token, which other load disturbs far less than tokens/s.
 * Linux only (`/proc`); elsewhere nothing is measured.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on every Linux the benchmark targets). */
const TICKS_PER_SECOND = 100;

interface Snapshot {
  at: number;
  /** Ticks all CPUs spent in user, nice and system time. */
  machine: number;
  /** Ticks the hypervisor ran something else while this machine wanted its CPUs. */
  steal: number;
  /** Ticks spent by this process and its descendants (workerd, the peer) that are alive now. */
  ours: number;
  /** Of those, the descendants' alone: the target's processes (the load generator runs in this one). */
  target: number;
}

function readTicks(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // the process ended meanwhile
  }
}

function snapshot(): Snapshot {
  // The machine's line: cpu user nice system idle iowait irq softirq steal ...
  const times = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0] = times;
  const steal = times[7] ?? 0;
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readTicks(`/proc/${entry}/stat`);
    if (stat === undefined) continue;
    // Fields after the command name, which may hold spaces: state ppid ... utime (12th) stime (13th).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(entry);
    const parent = Number(fields[1]);
    children.set(parent, [...(children.get(parent) ?? []), pid]);
    ticks.set(pid, Number(fields[11]) + Number(fields[12]));
  }
  let ours = 0;
  const pending = [process.pid];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    ours += ticks.get(pid) ?? 0;
    pending.push(...(children.get(pid) ?? []));
  }
  return {
    at: performance.now(),
    machine: user + nice + system,
    steal,
    ours,
    target: ours - (ticks.get(process.pid) ?? 0),
  };
}

/** Average cores taken from the benchmark over a run. */
export interface Contention {
  /** Kept busy by processes other than the benchmark's. */
  otherCores: number;
  /** Taken by the hypervisor (steal time). */
  stolenCores: number;
  /**
   * CPU time the target's own processes used (ms): workerd for Tessera and the floors, Node and Postgres
   * for the peers. Per token, it is what a token costs whatever else the machine was doing.
   */
  targetCpuMs: number;
}

/**
 * Starts measuring; the function returned stops and gives what the rest of the machine took meanwhile
 * (undefined where `/proc` is not available).
 */
export function measureContention(): () => Contention | undefined {
  if (!existsSync('/proc/stat')) return () => undefined;
  const start = snapshot();
  return () => {
    const end = snapshot();
    const ticks = ((end.at - start.at) / 1000) * TICKS_PER_SECOND;
    if (ticks <= 0) return undefined;
    const others = end.machine - start.machine - (end.ours - start.ours);
    return {
      otherCores: Math.max(0, others / ticks),
      stolenCores: (end.steal - start.steal) / ticks,
      targetCpuMs: ((end.target - start.target) * 1000) / TICKS_PER_SECOND,
    };
  };
}
