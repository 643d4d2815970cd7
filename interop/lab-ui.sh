#!/usr/bin/env bash
# The lab's page in a real browser: Playwright (PyPI) drives Debian's Chromium headless. It opens
# `appnet lab --ui`, presses "Scene 1", and checks that the sequence chart draws the iterative
# walk (host -> local DNS server -> root -> edu -> umass.edu -> cs.umass.edu -> back) with the
# final answer, that clicking an arrow shows the decoded DNS message, and that the page made no
# request outside the lab's server. The screenshot is kept as $ARTIFACTS/lab-ui.png (or $WORK).
source "$(dirname "$0")/lib.sh"

[ -x /usr/bin/chromium ] || { echo "FAIL: /usr/bin/chromium missing (.ci/apt.d/ui.txt)" >&2; exit 1; }
python3 -c 'import playwright' || { echo "FAIL: python3 playwright missing (.ci/pip.d/ui.txt)" >&2; exit 1; }

UI_PORT=$(free_port)
DNS_PORT=$(free_port)
WEB_PORT=$(free_port)
FTP_PORT=$(free_port)
bg "$APPNET" lab --ui "127.0.0.1:$UI_PORT" --dns-port "$DNS_PORT" --web-port "$WEB_PORT" --ftp-port "$FTP_PORT" \
  --dir "$WORK/lab" >"$WORK/lab.log" 2>&1
wait_tcp 127.0.0.1 "$UI_PORT" 60

OUT=${ARTIFACTS:-$WORK}
mkdir -p "$OUT"
timeout 400 python3 - "$UI_PORT" "$OUT/lab-ui.png" >"$WORK/result.txt" <<'PY'
import sys
from playwright.sync_api import sync_playwright

port, shot = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
outside = []
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("request", lambda r: None if r.url.startswith(base + "/") or r.url.startswith("data:")
            else outside.append(r.url))
    page.goto(base + "/")
    page.get_by_role("button", name="Scene 1: iterative resolution").wait_for(timeout=10000)
    # Wait for the event stream to attach before asking for the scene.
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('live')", timeout=10000)
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Scene 1: iterative resolution").click()
    # The walk ends with the resolver's answer to the host.
    page.wait_for_function(
        """() => [...document.querySelectorAll('#chart [data-message]')].some(
             g => g.dataset.from === 'dns.poly.edu' && g.dataset.to === 'cis.poly.edu')""",
        timeout=30000)
    msgs = page.eval_on_selector_all(
        "#chart [data-message]",
        "els => els.map(g => [g.dataset.from, g.dataset.to, g.querySelector('title').textContent])")
    print("messages", len(msgs))
    for m in msgs:
        print("step", m[0], "->", m[1], "|", m[2])
    page.locator("#chart [data-message]").nth(len(msgs) - 1).click()
    page.wait_for_selector("#detail-fields tr[data-field='ID']", timeout=5000)
    fields = page.eval_on_selector_all(
        "#detail-fields tr", "rows => rows.map(r => r.dataset.field + '=' + r.cells[1].textContent)")
    for f in fields:
        print("field", f)
    print("hex", page.text_content("#detail-hex").splitlines()[0])
    focused = page.evaluate("() => { const m = document.querySelector('#chart [data-message]'); m.focus(); return document.activeElement === m; }")
    print("focusable", focused)
    page.screenshot(path=shot, full_page=False)
    print("map_hosts", page.eval_on_selector_all("#map [data-host]", "els => els.length"))
    # Scene 6: the page with ten images, drawn as HTTP arrows between the client and the server.
    page.get_by_role("button", name="Scene 6: the Web page with ten images").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chart [data-protocol=\"HTTP\"]').length >= 66", timeout=30000)
    http = page.eval_on_selector_all(
        "#chart [data-protocol='HTTP']",
        "els => els.map(g => g.dataset.from + '>' + g.dataset.to + '>' + g.querySelector('title').textContent)")
    print("http", len(http), sum(1 for h in http if h.startswith("cis.poly.edu>www.someschool.edu>") and "GET /someDepartment/" in h),
          sum(1 for h in http if h.startswith("www.someschool.edu>cis.poly.edu>") and "HTTP/1.1 200" in h))
    # The Fetch control: from cis.poly.edu, resolve www.someschool.edu and GET the page.
    page.get_by_role("button", name="Fetch").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chart [data-protocol=\"HTTP\"]').length >= 68", timeout=30000)
    last = page.eval_on_selector_all(
        "#chart [data-message]",
        "els => els.slice(-4).map(g => g.dataset.protocol + ' ' + g.dataset.from + '>' + g.dataset.to + ' ' + g.querySelector('title').textContent)")
    for m in last:
        print("fetch", m)
    # One button per scene of the tour, labelled as the tour prints it.
    scenes = page.evaluate("() => fetch('/lab.json').then(r => r.json()).then(j => j.scenes.map(s => s.title))")
    missing = [t for t in scenes if page.get_by_role("button", name=t, exact=True).count() != 1]
    print("scenes", len(scenes), "missing", len(missing), "|".join(missing))
    # Keyboard: Tab from the button before the mail scene's reaches it; Enter runs it.
    mail_title = next(t for t in scenes if t.startswith("Scene 11: "))
    before = scenes[scenes.index(mail_title) - 1]
    page.get_by_role("button", name=before, exact=True).focus()
    page.keyboard.press("Tab")
    print("tabbed", page.evaluate("() => document.activeElement.textContent"))
    page.keyboard.press("Enter")
    page.wait_for_function(
        """() => [...document.querySelectorAll('#chart [data-protocol="IMAP"]')].some(
             g => g.dataset.to === "bob's host" && g.querySelector('title').textContent.includes('BODY.PEEK[]'))""",
        timeout=60000)
    smtp = page.eval_on_selector_all(
        "#chart [data-protocol='SMTP']",
        "els => els.map(g => g.dataset.from + '>' + g.dataset.to + '>' + g.querySelector('title').textContent)")
    for m in smtp:
        print("smtp", m)
    rcpt = page.locator("#chart [data-protocol='SMTP'][data-from='mail.crepes.fr'][data-to='mail.hamburger.edu']",
                        has_text="RCPT TO")
    rcpt.first.click()
    page.wait_for_selector("#detail-fields tr[data-field='Command']", timeout=5000)
    for f in page.eval_on_selector_all(
            "#detail-fields tr", "rows => rows.map(r => r.dataset.field + '=' + r.cells[1].textContent)"):
        print("smtpfield", f)
    print("smtphex", page.text_content("#detail-hex").splitlines()[0])
    # A P2P scene: the Chord lookup, hop by hop.
    page.get_by_role("button", name=next(t for t in scenes if t.startswith("Scene 10: ")), exact=True).click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#chart [data-protocol="Chord"]')].some(
             g => g.querySelector('title').textContent.includes('does not answer'))""",
        timeout=120000)
    for m in page.eval_on_selector_all(
            "#chart [data-protocol='Chord']",
            "els => els.map(g => g.dataset.from + '>' + g.dataset.to + '>' + g.querySelector('title').textContent)"):
        print("chord", m)
    page.screenshot(path=shot.replace(".png", "-chord.png"), full_page=False)
    browser.close()
print("outside", len(outside), " ".join(outside))
PY
cat "$WORK/result.txt"

# The validating resolver (the lab signs its zones) also fetches each zone's DNSKEY and DS on the
# way: those chain-of-trust exchanges are drawn too, and left out of the textbook's ten.
steps=$(grep '^step ' "$WORK/result.txt" | grep -vE ' (DNSKEY|DS) \(iterative\)$| answer: [^ ]+ [0-9]+ IN (DNSKEY|DS) ' | awk '{print $2 ">" $4}' | sed 's/^[a-m]\.root-servers\.net/ROOT/; s/>[a-m]\.root-servers\.net$/>ROOT/' | tr '\n' ' ')
# Any root server may be asked first (ROOT); the rest of the walk is fixed by the zones.
check "the chart shows the iterative walk's ten exchanges in order (DNSSEC's DNSKEY/DS aside)" \
  "cis.poly.edu>dns.poly.edu dns.poly.edu>ROOT ROOT>dns.poly.edu dns.poly.edu>a.edu-servers.net a.edu-servers.net>dns.poly.edu dns.poly.edu>dns.umass.edu dns.umass.edu>dns.poly.edu dns.poly.edu>dns.cs.umass.edu dns.cs.umass.edu>dns.poly.edu dns.poly.edu>cis.poly.edu " \
  "$steps"
check "the last arrow carries the final answer" yes \
  "$(grep '^step dns.poly.edu -> cis.poly.edu' "$WORK/result.txt" | grep -q 'gaia.cs.umass.edu.*A.*127.0.10.3' && echo yes || echo no)"
check "the decoded reply shows its flags" yes "$(grep -q '^field Flags=QR.*RD RA' "$WORK/result.txt" && echo yes || echo no)"
check "the decoded reply shows its question" yes "$(grep -q '^field Question=gaia.cs.umass.edu. A' "$WORK/result.txt" && echo yes || echo no)"
check "the decoded reply shows its answer section" yes "$(grep -q '^field Answer 1=gaia.cs.umass.edu.*127.0.10.3' "$WORK/result.txt" && echo yes || echo no)"
check "the bytes are shown in hex" yes "$(grep -qE '^hex 0000  [0-9a-f]{2} [0-9a-f]{2}' "$WORK/result.txt" && echo yes || echo no)"
check "arrows take the keyboard focus" "focusable True" "$(grep '^focusable' "$WORK/result.txt")"
check "the map draws the lab's hosts" yes "$(awk '/^map_hosts/ {print ($2 > 20) ? "yes" : "no"}' "$WORK/result.txt")"
check "no request left the lab's server" "outside 0 " "$(grep '^outside' "$WORK/result.txt")"
# 3 modes x 11 objects: 33 requests from cis.poly.edu and 33 responses 200 back.
check "scene 6 draws every request and response" "http 66 33 33" "$(grep '^http ' "$WORK/result.txt")"
check "Fetch resolves the name, then GETs the page" \
  "DNS dns.poly.edu>cis.poly.edu|HTTP cis.poly.edu>www.someschool.edu|HTTP www.someschool.edu>cis.poly.edu" \
  "$(grep '^fetch ' "$WORK/result.txt" | tail -n 3 | awk '{print $2 " " $3}' | paste -sd'|')"
check "the fetched page came back 200" yes \
  "$(grep -q '^fetch HTTP www.someschool.edu>cis.poly.edu .*HTTP/1.1 200' "$WORK/result.txt" && echo yes || echo no)"
check "one button per scene of the tour" "missing 0" "$(grep '^scenes ' "$WORK/result.txt" | awk '{print $3, $4}')"
check "the tour has scenes 1 to 14 at least" yes "$(awk '/^scenes / {print ($2 >= 14) ? "yes" : "no"}' "$WORK/result.txt")"
check "Tab reaches the mail scene's button" yes "$(grep -q '^tabbed Scene 11: alice@crepes.fr mails bob@hamburger.edu' "$WORK/result.txt" && echo yes || echo no)"
smtp_has() { grep -q "^smtp $1>$2>.*SMTP $3" "$WORK/result.txt" && echo yes || echo no; }
check "alice's host submits MAIL FROM to mail.crepes.fr" yes "$(smtp_has "alice's host" mail.crepes.fr 'MAIL FROM:<alice@crepes.fr>')"
check "mail.crepes.fr relays MAIL FROM to mail.hamburger.edu" yes "$(smtp_has mail.crepes.fr mail.hamburger.edu 'MAIL FROM:<alice@crepes.fr>')"
check "mail.crepes.fr relays RCPT TO to mail.hamburger.edu" yes "$(smtp_has mail.crepes.fr mail.hamburger.edu 'RCPT TO:<bob@hamburger.edu>')"
check "mail.crepes.fr sends DATA to mail.hamburger.edu" yes "$(smtp_has mail.crepes.fr mail.hamburger.edu 'DATA')"
check "mail.hamburger.edu answers 250" yes "$(smtp_has mail.hamburger.edu mail.crepes.fr '250 ')"
check "the message is accepted with 250 queued" yes "$(smtp_has mail.hamburger.edu mail.crepes.fr '250 2.0.0 Ok: queued')"
check "a click on RCPT TO shows its decoded fields" "smtpfield Command=RCPT TO|smtpfield Argument=<bob@hamburger.edu>" \
  "$(grep -E '^smtpfield (Command|Argument)=' "$WORK/result.txt" | head -n 2 | paste -sd'|')"
check "the SMTP bytes are shown in hex (RCPT)" yes "$(grep -qE '^smtphex 0000  52 43 50 54' "$WORK/result.txt" && echo yes || echo no)"
check "the Chord lookup: peer 3 asks peer 12" yes "$(grep -q '^chord chord-peer-3>chord-peer-12>.*FindSuccessor(key 14)' "$WORK/result.txt" && echo yes || echo no)"
check "the Chord lookup: peer 12 answers 15" yes "$(grep -q "^chord chord-peer-12>chord-peer-3>.*is my successor's: 15" "$WORK/result.txt" && echo yes || echo no)"
check "the Chord leave: peer 4's stabilize finds 5 gone" yes "$(grep -q '^chord chord-peer-4>chord-peer-5>.*does not answer' "$WORK/result.txt" && echo yes || echo no)"
check "the screenshot was taken" yes "$([ -s "$OUT/lab-ui.png" ] && echo yes || echo no)"
check "the text tour printed the same walk" yes \
  "$(grep -qE '^ ?[0-9]+\. dns\.poly\.edu → cis\.poly\.edu: gaia\.cs\.umass\.edu' "$WORK/lab.log" && echo yes || echo no)"
echo "lab-ui: $CHECKS checks passed"
