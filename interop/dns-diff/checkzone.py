"""check-zone against BIND's named-checkzone on a corpus of tricky zone files.

For each file: both verdicts (OK / not loaded) must agree, and for zones both load, the record
sets (named-checkzone -D vs appnet dns check-zone --print, parsed by dnspython) must be equal.
Usage: checkzone.py APPNET ORIGIN FILE...   Prints each mismatch; exits 1 if there is any.
"""
import subprocess
import sys

import dns.name
import dns.zone


def records(text, origin):
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    out = set()
    for name, ttl, rdata in zone.iterate_rdatas():
        out.add((name.to_text().lower(), ttl, dns.rdatatype.to_text(rdata.rdtype), rdata.to_text().lower()))
    return out


def main():
    appnet, origin, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    mismatches = 0
    for f in files:
        bind = subprocess.run(["named-checkzone", "-D", "-o", "-", origin, f], capture_output=True, text=True)
        ours = subprocess.run([appnet, "dns", "check-zone", "--print", "--origin", origin, f],
                              capture_output=True, text=True)
        bind_ok, ours_ok = bind.returncode == 0, ours.returncode == 0
        name = f.rsplit("/", 1)[-1]
        if bind_ok != ours_ok:
            mismatches += 1
            print(f"  MISMATCH {name}: named-checkzone {'OK' if bind_ok else 'rejects'}, "
                  f"appnet {'OK' if ours_ok else 'rejects'}")
            print("    named-checkzone: " + (bind.stderr + bind.stdout).strip().replace("\n", "\n    "))
            print("    appnet: " + ours.stdout.strip().replace("\n", "\n    "))
            continue
        if not bind_ok:
            print(f"  ok: {name}: both reject")
            continue
        dump = "\n".join(l for l in ours.stdout.splitlines() if not l.startswith(("zone ", "OK", f + ":")))
        theirs, mine = records(bind.stdout, origin), records(dump, origin)
        if theirs != mine:
            mismatches += 1
            print(f"  MISMATCH {name}: record sets differ")
            for r in sorted(theirs - mine):
                print(f"    only named-checkzone: {r}")
            for r in sorted(mine - theirs):
                print(f"    only appnet: {r}")
        else:
            print(f"  ok: {name}: both load, {len(mine)} identical records")
    print(f"check-zone vs named-checkzone: {len(files)} files, {mismatches} mismatches")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
