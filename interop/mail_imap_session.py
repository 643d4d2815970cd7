#!/usr/bin/env python3
"""A scripted IMAP session (Python imaplib) covering the IMAP4rev1 command list, run against
appnet and against Dovecot on copies of the same Maildir. It prints one normalised line per
step (no UIDVALIDITY values, no dates), so the two transcripts can be compared with diff."""
import imaplib
import re
import sys
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = []


def say(step, value):
    out.append(f"{step}: {value}")


def ok(r):
    typ, data = r
    if typ != "OK":
        raise SystemExit(f"command failed: {typ} {data}")
    return data


M = imaplib.IMAP4(host, port)
caps = set(M.capabilities)
say("preauth capabilities", " ".join(sorted(c for c in caps if c in ("IMAP4REV1", "AUTH=PLAIN", "LITERAL+", "SASL-IR"))))
ok(M.login(user, password))
typ, _ = M._simple_command("CAPABILITY")
caps = set(M.untagged_responses.get("CAPABILITY", [b""])[-1].decode().upper().split())
for c in ("IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT"):
    say("capability " + c, c in caps)
ns = ok(M.namespace())[0].decode()
say("namespace", ns)
# CREATE / LIST / LSUB / SUBSCRIBE / RENAME / DELETE
ok(M.create("Work"))
ok(M.create("Work.Projects"))
say("create existing", M.create("Work")[0])
ok(M.subscribe("Work"))
names = sorted(re.sub(r'^\(.*?\) "." ', "", l.decode()).strip('"') for l in ok(M.list('""', "*")))
say("list", ",".join(names))
say("list %", ",".join(sorted(re.sub(r'^\(.*?\) "." ', "", l.decode()).strip('"') for l in ok(M.list('""', "%")))))
say("lsub", ",".join(sorted(re.sub(r'^\(.*?\) "." ', "", l.decode()).strip('"') for l in ok(M.lsub('""', "*")) if l)))
ok(M.rename("Work.Projects", "Archive"))
ok(M.unsubscribe("Work"))
ok(M.delete("Work"))
say("list after rename/delete", ",".join(sorted(re.sub(r'^\(.*?\) "." ', "", l.decode()).strip('"') for l in ok(M.list('""', "*")))))
# STATUS and SELECT
st = ok(M.status("INBOX", "(MESSAGES UNSEEN)"))[0].decode()
say("status", re.sub(r"^\"?INBOX\"? ", "", st))
n = int(ok(M.select("INBOX"))[0])
say("select exists", n)
say("recent", M.untagged_responses.get("RECENT", [b"?"])[-1].decode())
# FETCH
for item in ("(FLAGS)", "(RFC822.SIZE)", "(ENVELOPE)", "(BODYSTRUCTURE)", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "(BODY.PEEK[TEXT]<0.10>)", "(BODY.PEEK[1])"):
    data = ok(M.fetch("1", item))
    flat = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in data).decode(errors="replace")
    say("fetch " + item, flat)
sizes = ok(M.fetch("1:*", "(RFC822.SIZE)"))
say("fetch 1:* sizes", " ".join(re.search(rb"RFC822.SIZE (\d+)", s).group(1).decode() for s in sizes))
body = ok(M.fetch("1", "(BODY[])"))[0][1]
say("body[] length", len(body))
say("flags after body[]", ok(M.fetch("1", "(FLAGS)"))[0].decode())
# SEARCH
for crit in ("ALL", "UNSEEN", "SEEN", "SUBJECT Ketchup", "FROM alice", "BODY pickles", "LARGER 100000", "NOT SEEN", "OR SEEN FLAGGED", "HEADER Message-ID crepes"):
    say("search " + crit, ok(M.search(None, crit))[0].decode())
say("uid search all (count)", len(ok(M.uid("SEARCH", "ALL"))[0].split()))
# STORE
say("store +flagged", ok(M.store("2", "+FLAGS", "(\\Flagged)"))[0].decode())
say("store -flagged silent", ok(M.store("2", "-FLAGS.SILENT", "(\\Flagged)")))
say("store keyword", ok(M.store("2", "+FLAGS", "($Label1)"))[0].decode())
# COPY / MOVE / APPEND (UIDPLUS codes checked for presence only)
typ, data = M.copy("1", "Archive")
say("copy", (typ, "COPYUID" in str(M.untagged_responses) or "COPYUID" in str(data)))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
typ, data = M._simple_command("MOVE", "2", "Archive")
say("move", typ)
say("exists after move", int(ok(M.select("INBOX"))[0]))
typ, data = M.append("Archive", "(\\Seen)", None, b"Subject: appended\r\n\r\nhello\r\n")
say("append", (typ, "APPENDUID" in data[0].decode()))
say("status archive", re.sub(r"^\"?Archive\"? ", "", ok(M.status("Archive", "(MESSAGES UNSEEN)"))[0].decode()))
# EXPUNGE
ok(M.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
typ, data = M.expunge()
say("expunge", [d.decode() if d else d for d in data])
# UID FETCH and UID STORE
uids = ok(M.uid("SEARCH", "ALL"))[0].split()
if uids:
    say("uid fetch flags", re.sub(rb"UID \d+", b"UID x", ok(M.uid("FETCH", uids[0], "(FLAGS)"))[0]).decode())
# EXAMINE is read-only
ok(M.select("Archive", readonly=True))
say("store in examine", M.store("1", "+FLAGS", "(\\Seen)")[0])
# IDLE: another connection delivers by APPEND; the idler hears EXISTS
ok(M.select("INBOX"))
tag = M._new_tag().decode()
M.send(f"{tag} IDLE\r\n".encode())
line = M.readline()
say("idle continuation", line[:1].decode())
N = imaplib.IMAP4(host, port)
ok(N.login(user, password))
ok(N.append("INBOX", None, None, b"Subject: while idling\r\n\r\nhi\r\n"))
N.logout()
deadline = time.time() + 10
heard = b""
while time.time() < deadline:
    line = M.readline()
    heard = line
    if b"EXISTS" in line:
        break
say("idle heard", re.sub(rb"\d+", b"n", heard.strip()).decode())
M.send(b"DONE\r\n")
while True:
    line = M.readline()
    if line.startswith(tag.encode()):
        say("idle done", line.split()[1].decode())
        break
# Bad input: BAD, and the session goes on
tag = M._new_tag().decode()
M.send(f"{tag} FROB the knob\r\n".encode())
while True:
    line = M.readline()
    if line.startswith(tag.encode()):
        say("bad command", line.split()[1].decode())
        break
say("noop after bad", M.noop()[0])
ok(M.close())
say("logout", M.logout()[0])
print("\n".join(out))
