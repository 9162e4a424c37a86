#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Reads the serial logs that scripts/guest.sh wrote and counts the results.
#
# Usage: report.py [--failures FILE] [--host CARGO_LOG] LOG...
#   FILE: one failed check per line (the host's build steps), may be empty
#   CARGO_LOG: the output of "cargo test" on the host; each "test NAME ... ok"
#   is a pass and each "... FAILED" a failure
#
# Counted, per log (one guest boot):
#   - every kselftest test case (KTAP between "### wd: begin/end kselftest"),
#     plus a failure for a binary that exits badly, stops short of its plan or
#     never finishes;
#   - every KUnit test case in the guest's kernel log (the dmesg dump at the
#     end): the built-in suites that ran at boot, Rust doctests included, and
#     any suite a module ran when insmod-ed. Nested KTAP is walked down to
#     the leaves, so a suite's summary line is not a case of its own;
#   - the guest's own checks ("### wd: check NAME ok|fail"), the demo's exit
#     status in run mode, and two host checks: the guest completed (reached
#     "### wd: done" and QEMU exited 0, not by timeout or panic), and the
#     kernel log is clean (no BUG, WARNING, Oops, lockdep report, ...).
# A "# SKIP" is neither a pass nor a failure.
#
# The last line printed is "N passed, N failed". The exit status is 1 if
# anything failed or nothing passed at all.

import re
import sys

TIMESTAMP = re.compile(r'^\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])? ?')
RESULT = re.compile(r'^( *)(not ok|ok) +(\d+)\b *(?:- *)?(.*?)(?: +# *(.*?))? *$')
SUBTEST = re.compile(r'^( *)# Subtest: *(.*?) *$')
PLAN = re.compile(r'^( *)1\.\.(\d+)')
MARK = re.compile(r'^### wd: (.*?) *$')

# A line in the kernel log matching any of these fails "kernel log clean".
# Lockdep's reports start with "WARNING:" or "BUG:"; a bare "lockdep" would
# match the harmless boot banners ("RCU lockdep checking is enabled").
BAD = re.compile('|'.join([
    r'BUG:', r'WARNING:', r'Oops', r'KASAN', r'UBSAN:', r'KCSAN:',
    r'kernel BUG at', r'general protection fault', r'Unable to handle kernel',
    r'possible circular locking', r'inconsistent lock state', r'INFO: possible',
    r'DEBUG_LOCKS_WARN_ON', r'lockdep is turned off', r'suspicious RCU usage',
    r'sleeping function called from invalid context',
    r'refcount_t:', r'Kernel panic', r'Call Trace', r'INFO: task .* blocked',
    r'detected stall', r'soft lockup', r'hard LOCKUP', r'unreferenced object',
]))


class Run:
    def __init__(self, path):
        self.path = path
        self.results = []   # (status, name, detail lines); status pass/fail/skip
        self.counts = {}    # category -> [passed, failed, skipped]
        self.note = ''
        self.label = '?'

    def add(self, category, status, name, detail=()):
        self.results.append((status, name, list(detail)))
        c = self.counts.setdefault(category, [0, 0, 0])
        c[('pass', 'fail', 'skip').index(status)] += 1


def ktap(lines):
    """Yields (status, path, diagnostics) for every leaf result, where the
    diagnostics are the lines printed since the previous result; returns
    the top-level plan and result count as the generator's value."""
    subtests = {}   # indent -> name of the suite whose children sit there
    prev_indent = -1
    plan = None
    top = 0
    notes = []
    for line in lines:
        m = SUBTEST.match(line)
        if m:
            ind = len(m.group(1))
            for k in [k for k in subtests if k >= ind]:
                del subtests[k]
            subtests[ind] = m.group(2)
            continue
        m = PLAN.match(line)
        if m and len(m.group(1)) == 0 and plan is None:
            plan = int(m.group(2))
            continue
        m = RESULT.match(line)
        if not m:
            if line.strip() and not re.match(r' *K?TAP version', line):
                notes.append(line.strip())
            continue
        diag, notes = notes[-12:], []
        ind = len(m.group(1))
        ok = m.group(2) == 'ok'
        name = m.group(4) or f'#{m.group(3)}'
        directive = (m.group(5) or '').upper()
        if ind == 0:
            top += 1
        # A summary line directly follows its last (deeper) child.
        leaf = prev_indent <= ind
        prev_indent = ind
        for k in [k for k in subtests if k > ind]:
            del subtests[k]
        if not leaf:
            continue
        path = '/'.join([subtests[k] for k in sorted(subtests) if k <= ind] + [name])
        if directive.startswith('SKIP'):
            yield 'skip', path, diag
        else:
            yield ('pass' if ok else 'fail'), path, diag
    return plan, top


def leaves(lines):
    gen = ktap(lines)
    out = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as e:
            return out, e.value


def parse(path):
    run = Run(path)
    with open(path, errors='replace') as f:
        lines = [l.rstrip('\r\n').replace('\r', '') for l in f]

    iommu = '?'
    for l in lines[:1]:
        m = re.search(r'wd\.iommu=(\d)', l)
        if m:
            iommu = 'on' if m.group(1) == '1' else 'off'
    profile = 'normal'
    for l in lines[:1]:
        m = re.search(r'wd\.profile=(\S+)', l)
        if m:
            profile = m.group(1)
    label = f'iommu={iommu}' if profile == 'normal' else f'{profile}, iommu={iommu}'
    if lines and 'wd.swiotlb=1' in lines[0]:
        label += ', swiotlb=force'
    run.label = label

    qemu_rc = None
    done = False
    dump = None           # kernel log lines from the dmesg dump
    after_dump = []       # console lines after it (reboot, late oopses)
    section = None        # (kind, name, lines)
    for l in lines:
        if l.startswith('### host: qemu rc='):
            qemu_rc = int(re.search(r'rc=(\d+)', l).group(1))
            run.note = l[len('### host: '):]
            continue
        m = MARK.match(l)
        if not m:
            if section:
                section[2].append(l)
            elif dump is not None:
                after_dump.append(l)
            continue
        words = m.group(1).split()
        if words[0] == 'begin':
            section = (words[1], ' '.join(words[2:]), [])
            if words[1] == 'dmesg':
                dump = None
        elif words[0] == 'end' and section:
            kind, name, body = section
            section = None
            rc = re.search(r'rc=(\d+)', m.group(1))
            rc = int(rc.group(1)) if rc else None
            if kind == 'kselftest':
                kselftest(run, name, body, rc, finished=True)
            elif kind == 'demo':
                run.add('checks', 'pass' if rc == 0 else 'fail',
                        f'demo exit status ({label})', body if rc != 0 else ())
            elif kind == 'dmesg':
                dump = body
                after_dump = []
        elif words[0] == 'check':
            name, status = words[1], words[2] if len(words) > 2 else 'fail'
            run.add('checks', 'pass' if status == 'ok' else 'fail',
                    f'{name} ({label})', [' '.join(words[3:])] if status != 'ok' else ())
        elif words[0] == 'done':
            done = True
    if section and section[0] == 'kselftest':
        kselftest(run, section[1], section[2], None, finished=False)

    # Without the dump (the guest died), the KUnit lines the console showed
    # are still worth counting: the last one names where it stopped.
    klog = dump if dump is not None else [x for x in lines if TIMESTAMP.match(x)]
    for status, name, diag in leaves([TIMESTAMP.sub('', x) for x in klog])[0]:
        run.add('kunit', status, f'kunit {name} ({label})', diag)

    ok = done and qemu_rc == 0
    why = []
    if not done:
        why.append('the guest never reached "### wd: done" (crash, panic or timeout)')
    if qemu_rc != 0:
        why.append(f'{run.note or "QEMU did not report an exit status"}')
    run.add('checks', 'pass' if ok else 'fail', f'guest completed ({label})', why)

    scanned = (dump + after_dump) if dump is not None else lines
    bad = [x for x in scanned if BAD.search(x) and not x.startswith('### ')]
    if bad and dump is None:
        bad.insert(0, '(no dmesg dump: these are from the serial console)')
    run.add('checks', 'fail' if bad else 'pass', f'kernel log clean ({label})', bad)
    return run


def kselftest(run, binary, body, rc, finished):
    found, (plan, top) = leaves(body)
    for status, name, diag in found:
        run.add('kselftest', status, f'kselftest {binary}: {name} ({run.label})', diag)
    failed = any(s == 'fail' for s, _, _ in found)
    problems = []
    if not finished:
        problems.append('did not finish (guest died while it ran)')
    elif rc not in (0, 4) and not failed:
        problems.append(f'exited with status {rc}' + (' (timed out)' if rc in (124, 143) else ''))
    if plan is not None and top < plan:
        problems.append(f'planned {plan} tests, reported {top}')
    if plan is None and not found and rc != 4:
        problems.append('printed no KTAP plan or results')
    if problems:
        run.add('kselftest', 'fail', f'kselftest {binary} ({run.label})',
                problems + body[-20:])


HOST_TEST = re.compile(r'^test (.*?) \.\.\. (ok|FAILED|ignored)$')


def host_tests(path):
    """Counts the cases of a "cargo test" log; no case at all is a failure."""
    passed = failed = 0
    try:
        with open(path, errors='replace') as f:
            for line in f:
                m = HOST_TEST.match(line.rstrip('\n'))
                if not m:
                    continue
                if m.group(2) == 'ok':
                    passed += 1
                elif m.group(2) == 'FAILED':
                    print(f'FAIL: host test {m.group(1)}')
                    failed += 1
    except OSError as e:
        print(f'FAIL: cannot read {path}: {e}')
        return 0, 1
    if not passed and not failed:
        print(f'FAIL: no host test ran ({path})')
        failed += 1
    print(f'== host: {passed} passed/{failed} failed; log: {path}')
    return passed, failed


def main(args):
    passed = failed = skipped = 0
    paths = list(args)
    if paths[:1] == ['--failures']:
        with open(paths[1]) as f:
            for line in f:
                if line.strip():
                    print(f'FAIL: {line.strip()}')
                    failed += 1
        paths = paths[2:]
    if paths[:1] == ['--host']:
        p, f = host_tests(paths[1])
        passed += p
        failed += f
        paths = paths[2:]
    for path in paths:
        try:
            run = parse(path)
        except OSError as e:
            print(f'FAIL: cannot read {path}: {e}')
            failed += 1
            continue
        for status, name, detail in run.results:
            if status == 'fail':
                print(f'FAIL: {name}')
                for d in detail:
                    if d:
                        print(f'      {d}')
        summary = ', '.join(f'{cat} {c[0]} passed/{c[1]} failed/{c[2]} skipped'
                            for cat, c in sorted(run.counts.items()))
        print(f'== {run.label}: {summary}; {run.note}; log: {path}')
        for status, _, _ in run.results:
            passed += status == 'pass'
            failed += status == 'fail'
            skipped += status == 'skip'
    if skipped:
        print(f'({skipped} skipped)')
    print(f'{passed} passed, {failed} failed')
    return 1 if failed or not passed else 0


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit('usage: report.py LOG...')
    sys.exit(main(sys.argv[1:]))
