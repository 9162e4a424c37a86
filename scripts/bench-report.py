#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
#
# Reads the serial log of a "make bench" guest (scripts/guest.sh bench) and
#   - writes the benchmark's JSON, found between "### wd: begin bench-json"
#     and "### wd: end bench-json", to OUTDIR/bench.json,
#   - prints the table and the ratios,
#   - draws OUTDIR/bench.png: submission cost per command, and the copies'
#     throughput by size.
#
# Usage: bench-report.py LOG [OUTDIR]   (OUTDIR: the log's directory)
#
# /usr/bin/python3, not the first python3 in PATH: matplotlib comes from
# Debian's python3-matplotlib (scripts/deps.sh), which only Debian's own
# interpreter sees. Without it, the table and the JSON still come out.
#
# Exits 1 if the log has no complete JSON or the benchmark failed.

import json
import os
import re
import sys

MARK = re.compile(r'^### wd: (.*?) *$')
# What scripts/report.py fails a run on, in short: worth a warning here.
SPLAT = re.compile(r'BUG:|WARNING:|Oops|KASAN|UBSAN:|Call Trace|'
                   r'kernel BUG at|general protection fault|Kernel panic|'
                   r'refcount_t:|sleeping function called|soft lockup|'
                   r'possible circular locking|unreferenced object')


def parse(path):
    """The JSON text, the benchmark's exit status, the splat lines and the
    profile block (make bench PROFILE_CASE=...)."""
    json_lines, rc, splats, profile = None, None, [], []
    mode = None
    with open(path, errors='replace') as f:
        for raw in f:
            line = raw.rstrip('\r\n').replace('\r', '')
            m = MARK.match(line)
            if m:
                what = m.group(1)
                if what == 'begin bench-json':
                    json_lines, mode = [], 'json'
                elif what == 'end bench-json':
                    mode = None
                elif what.startswith('end bench rc='):
                    rc = int(what.split('=', 1)[1])
                elif what == 'begin dmesg':
                    mode = 'dmesg'
                elif what == 'end dmesg':
                    mode = None
                continue
            if line.startswith('### wd_bench: begin profile'):
                mode = 'profile'
            if mode == 'profile':
                profile.append(line)
                if line.startswith('### wd_bench: end profile'):
                    mode = None
                continue
            if mode == 'json':
                json_lines.append(line)
            elif mode == 'dmesg' and SPLAT.search(line):
                splats.append(line)
    return json_lines, rc, splats, profile


def derived(c):
    if c['unit'] == 'share':
        return f"{c['median']:10.2f} of the moves"
    if c['bytes'] and c['group'] != 'pinning':
        return f"{c['bytes'] / c['median'] * 1e9 / 2**20:10.2f} MiB/s"
    if c['pages']:
        return f"{c['median'] / c['pages']:10.1f} ns/page"
    if c.get('polls_per_op'):
        return f"{c['polls_per_op']:10.2f} polls/cmd"
    return ''


def fmt_ns(ns):
    if ns >= 1e6:
        return f'{ns / 1e6:.1f} ms'
    if ns >= 1e3:
        return f'{ns / 1e3:.1f} us'
    return f'{ns:.0f} ns'


def print_report(b):
    print(f"warpdrive bench: kernel {b['kernel']}, profile {b['profile']}, "
          f"iommu {'on' if b['iommu'] else 'off'}, {b['cpus']} CPUs, "
          f"{b['reps']} repetitions of ~{b['target_ms']} ms per case, "
          f"{b['seconds']:.0f} s in the guest")
    print(f"(TCG guest: absolute times are not hardware's; compare ratios. "
          f"Null ioctl: {b['null_ioctl']})")
    print('\ncases:')
    for c in b['cases']:
        print(f"  {c['name']}: {c['desc']}")
    print(f"\n{'group':<11} {'case':<30} {'unit':<7} {'median':>12} "
          f"{'min':>12} {'max':>12} {'spread':>7} {'iters':>8}  derived")
    group = None
    for c in b['cases']:
        if group is not None and c['group'] != group:
            print()
        group = c['group']
        spread = (c['max'] - c['min']) / c['median'] * 100 if c['median'] else 0
        print(f"{c['group']:<11} {c['name']:<30} {c['unit']:<7} "
              f"{c['median']:12.0f} {c['min']:12.0f} {c['max']:12.0f} "
              f"{spread:6.0f}% {c['iters']:8d}  {derived(c)}")
    print('\nratios: median of the per-repetition ratios [min, max]; '
          'time of the first case / time of the second')
    for r in b['ratios']:
        print(f"{'*' if r['key'] else ' '} {r['name']:<31} {r['median']:8.3f}  "
              f"[{r['min']:.3f}, {r['max']:.3f}]  {r['num']} / {r['den']}")
    print('\nkey ratios:')
    for r in b['ratios']:
        if r['key']:
            print(f"  {r['desc']}: {r['median']:.3f}")


# Issue 11's goals that no case measures yet, with what they wait for.
UNMEASURED_GOALS = [
    ('P5', '>= 1000', 'commands per system call in poll mode: no poll mode yet'),
    ('P6', '<= 1.5', 'poll mode per command / io_uring SQPOLL NOP: no poll mode yet'),
]


def goal_lines(b):
    """One line per goal of issue 11, in the form a script can read."""
    lines = []
    for r in b['ratios']:
        if 'goal_id' in r:
            lines.append(f"{r['goal_id']} {r['median']:.2f} (goal <= "
                         f"{r['goal']:g}, spread {r['min']:.2f}-"
                         f"{r['max']:.2f})")
    for gid, goal, what in UNMEASURED_GOALS:
        lines.append(f'{gid} not measured (goal {goal}: {what})')
    return lines


def plot(b, path):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('bench-report: no matplotlib (python3-matplotlib), no plot',
              file=sys.stderr)
        return False
    cases = {c['name']: c for c in b['cases']}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 9))

    # (1) submission: time per command, with the spread over repetitions.
    # warpdrive's ring next to io_uring's and a pipe's round trip.
    sub = [c for c in b['cases'] if c['group'] in ('submission', 'anchors')
           and c['unit'] != 'wake/Mc']
    names = [c['name'] for c in sub]
    med = [c['median'] for c in sub]
    err = [[c['median'] - c['min'] for c in sub],
           [c['max'] - c['median'] for c in sub]]
    colors = ['tab:orange' if n.endswith('_kick') else
              'tab:purple' if n.startswith('uring') else
              'tab:red' if n.startswith('pipe') else
              'tab:blue' if n.startswith('nop') else
              'tab:green' if n.startswith('kick') else 'tab:gray'
              for n in names]
    y = range(len(sub))
    ax1.barh(y, med, xerr=err, color=colors, capsize=3)
    ax1.set_yticks(list(y), names)
    ax1.invert_yaxis()
    ax1.set_xscale('log')
    ax1.set_xlabel('ns per command or call (median, min-max bars)')
    ax1.set_title('(1) submission cost per command, reaping included: '
                  'warpdrive (blue),\nio_uring (purple); the KICK ioctls '
                  'alone (orange); pipe round trip (red); null ioctls')
    for i, c in enumerate(sub):
        ax1.annotate(fmt_ns(c['median']), (c['max'], i), xytext=(6, -3),
                     textcoords='offset points', fontsize=8)
    ax1.set_xlim(right=max(c['max'] for c in sub) * 3)

    # (2) copies: throughput by size.
    sizes = [4, 64, 1024]
    series = [
        ('emu_memcpy_reg_lat_{}k', 'EMU_MEMCPY registered, 1 in flight'),
        ('emu_memcpy_unreg_lat_{}k', 'EMU_MEMCPY unregistered, 1 in flight'),
        ('emu_memcpy_reg_tput_{}k', 'EMU_MEMCPY registered, batched'),
        ('emu_memcpy_unreg_tput_{}k', 'EMU_MEMCPY unregistered, batched'),
        ('memfd_write_read_{}k', 'memfd pwrite()+pread() (2 copies)'),
    ]
    width = 0.8 / len(series)
    for i, (pat, label) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(sizes):
            c = cases.get(pat.format(s))
            if not c:
                continue
            mib = c['bytes'] / 2**20 * 1e9
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            ys.append(mib / c['median'])
            lo.append(mib / c['median'] - mib / c['max'])
            hi.append(mib / c['min'] - mib / c['median'])
        ax2.bar(xs, ys, width, yerr=[lo, hi], label=label, capsize=2)
    ax2.set_xticks(range(len(sizes)), ['4 KiB', '64 KiB', '1 MiB'])
    ax2.set_yscale('log')
    ax2.set_ylabel('MiB/s (median, min-max bars)')
    ax2.set_title('(2) copies: throughput by size')
    dma = cases.get('edu_dma_copy_4k')
    if dma:
        ax2.set_xlabel(f"(edu DMA_COPY of 4 KiB on the device: "
                       f"{fmt_ns(dma['median'])} per command, bound by the "
                       'device model)', fontsize=9)
    ax2.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.12),
               ncol=2)
    fig.suptitle(f"warpdrive bench, {b['profile']} kernel {b['kernel']}, "
                 f"iommu {'on' if b['iommu'] else 'off'}, TCG guest, "
                 f"{b['reps']} repetitions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(args):
    if not 1 <= len(args) <= 2:
        print('usage: bench-report.py LOG [OUTDIR]', file=sys.stderr)
        return 2
    log = args[0]
    out = args[1] if len(args) > 1 else os.path.dirname(os.path.abspath(log))
    try:
        json_lines, rc, splats, profile = parse(log)
    except OSError as e:
        print(f'bench-report: {e}', file=sys.stderr)
        return 1
    if json_lines is None:
        print(f'bench-report: no benchmark JSON in {log} (benchmark rc={rc})',
              file=sys.stderr)
        return 1
    try:
        b = json.loads('\n'.join(json_lines))
    except ValueError as e:
        print(f'bench-report: bad JSON in {log}: {e}', file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'bench.json'), 'w') as f:
        json.dump(b, f, indent=1)
        f.write('\n')
    print_report(b)
    png = os.path.join(out, 'bench.png')
    if plot(b, png):
        print(f'\nplot: {png}')
    print(f"json: {os.path.join(out, 'bench.json')}")
    for line in splats:
        print(f'bench-report: kernel log: {line}', file=sys.stderr)
    if splats:
        print(f'bench-report: {len(splats)} suspicious kernel log lines in '
              f'{log}', file=sys.stderr)
    if rc != 0:
        print(f'bench-report: the benchmark exited with rc={rc}',
              file=sys.stderr)
    if profile:
        print('\nprofile (make bench PROFILE_CASE=...):')
        for line in profile[1:-1]:
            print(line)
    print('\ngoals (issue 11): ratio, its goal, spread over the repetitions')
    for line in goal_lines(b):
        print(line)
    sys.stdout.flush()
    if rc != 0:
        return 1
    return 1 if splats else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
