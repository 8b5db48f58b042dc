#!/usr/bin/python3
"""The browser half of tests/netns/ui-browser.sh: drives headless chromium (through cdp.py)
through the admin UI. Run it where the browser's DevTools port is (the LAN namespace).

    ui-browser.py setup PASSWORD            first visit -> /setup -> dashboard; log out; log in
    ui-browser.py login PASSWORD            get to the dashboard (set the password if need be)
    ui-browser.py leases MAC HOSTNAME       the DHCP client on the dashboard and on /clients
    ui-browser.py rename MAC NAME           rename through the form; the name shows on /clients
    ui-browser.py xss MAC                   rename to markup: shown as text, never run
    ui-browser.py forward PROTO EXT IP PORT add a port forward through the form on /ports
    ui-browser.py pcap MAC DIR              download the client's pcap from the dashboard link
    ui-browser.py pages OUTDIR PATH...      every page at 360 and 1280 px: status, overflow,
                                            labels, dark mode, screenshots

Environment: CDP_PORT (9222), UI_BASE (http://192.168.1.1:8080), CDP_BLOCK_URLS (patterns
the browser must not fetch, e.g. "*/favicon.ico"). Prints "ok   ..." lines;
a failure prints "FAIL: ..." on stderr and exits 1 (pages: after checking every page)."""
import json
import os
import re
import sys
import time
from urllib.parse import unquote, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, CDPError  # noqa: E402

BASE = os.environ.get("UI_BASE", "http://192.168.1.1:8080").rstrip("/")
PHONE = (360, 800, 2, True)
DESKTOP = (1280, 900, 1, False)


class Fail(Exception):
    pass


def ok(msg):
    print(f"ok   {msg}", flush=True)


def path_of(url):
    return unquote(urlparse(url).path)


def expect_page(b, status, path, what):
    """The browser shows `path` with HTTP `status`."""
    got, at = b.status(), path_of(b.url())
    if at != path:
        raise Fail(f"{what}: landed on {at} (HTTP {got}), want {path}")
    if got != status:
        raise Fail(f"{what}: {path} answered HTTP {got}, want {status}")


def go(b, path, what=None):
    """Loads path; it must answer 200 at that same path (not a redirect to /login)."""
    b.navigate(BASE + path)
    expect_page(b, 200, path.split("?")[0], what or f"GET {path}")


def text(b):
    return b.eval("document.body.innerText")


# ---- setup and login ----

def submit_pre(b, what):
    """Submits the setup or login form, the page having settled as it would for a person.
    On a 403, says why if the pre-session cookie no longer matches the form's token."""
    form_token = b.eval("(document.querySelector('input[name=csrf]') || {}).value")
    cookie = b.cookie("gh_pre")
    setters = list(b.set_cookies("gh_pre"))
    st = b.submit("#password")
    if st == 403 and cookie != form_token:
        raise Fail(f"{what}: HTTP 403 {text(b).strip()!r}: after the page loaded, the gh_pre cookie "
                   f"({str(cookie)[:8]}..) no longer matched the form's csrf token ({str(form_token)[:8]}..); "
                   f"gh_pre was set by: {', '.join(setters)}")
    return st


def cmd_setup(b, pw):
    b.viewport(*DESKTOP)
    b.navigate(BASE + "/")
    expect_page(b, 200, "/setup", "first visit to /")
    ok("first visit: / redirects to /setup")
    b.fill("#password", pw)
    b.fill("#again", pw)
    submit_pre(b, "setup form")
    expect_page(b, 200, "/", "after setting the password")
    if not b.eval("!!document.querySelector('form[action=\"/logout\"]')"):
        raise Fail("dashboard after setup has no logout form")
    ok("setup form set the password and landed on the dashboard")

    b.submit('form[action="/logout"]')
    expect_page(b, 200, "/login", "log out")
    b.navigate(BASE + "/")
    expect_page(b, 200, "/login", "/ after logging out")
    ok("logged out: / now redirects to /login")

    b.fill("#password", pw + "-wrong")
    submit_pre(b, "login form")
    expect_page(b, 401, "/login", "wrong password")
    alert = b.eval("(document.querySelector('[role=alert]') || {}).innerText || ''")
    if "Wrong password" not in alert:
        raise Fail(f"wrong password: no alert on the page (got {alert!r})")
    b.fill("#password", pw)
    submit_pre(b, "login form")
    expect_page(b, 200, "/", "log in")
    ok("login form: a wrong password is refused (401, alert), the right one lands on the dashboard")


def cmd_login(b, pw):
    """Gets to the dashboard from whatever state (no password yet, logged out, logged in)."""
    b.viewport(*DESKTOP)
    b.navigate(BASE + "/")
    at = path_of(b.url())
    if at == "/setup":
        b.fill("#password", pw)
        b.fill("#again", pw)
        submit_pre(b, "setup form")
    elif at == "/login":
        b.fill("#password", pw)
        submit_pre(b, "login form")
    expect_page(b, 200, "/", "log in")
    ok(f"logged in (from {at})")


# ---- clients ----

def find_row_js(mac):
    """JS: the text of the element around the link to /clients/MAC, or null."""
    return f"""(() => {{
        const want = {json.dumps('/clients/' + mac.lower())};
        for (const a of document.querySelectorAll('a[href]')) {{
            if (decodeURIComponent(new URL(a.href).pathname).toLowerCase() !== want) continue;
            const row = a.closest('tr, li, article, section') || a.parentElement;
            return row.innerText;
        }}
        return null; }})()"""


def cmd_leases(b, mac, hostname):
    b.viewport(*DESKTOP)
    go(b, "/", "dashboard")
    rows = b.eval("[...document.querySelectorAll('#leases tbody tr')].map(r => r.innerText)")
    if not any(hostname in r and mac.lower() in r.lower() for r in rows):
        raise Fail(f"dashboard: no lease row with {hostname} and {mac}: {rows}")
    ok(f"dashboard lists the DHCP lease of {hostname} ({mac})")

    go(b, "/clients", "clients page")
    row = b.eval(find_row_js(mac))
    if row is None:
        raise Fail(f"/clients: no link to /clients/{mac}")
    page = text(b)
    if hostname not in row or mac.lower() not in page.lower():
        raise Fail(f"/clients: the row linking to /clients/{mac} lacks {hostname}, or the page lacks its MAC: {row!r}")
    ok(f"/clients lists {hostname} ({mac}), linking to /clients/{mac}")


def rename_form(b, mac, name):
    """Finds the rename form (client page, else the list), fills it, submits; returns the
    status of the answer."""
    want = f"/clients/{mac.lower()}/name"
    find = f"""(() => {{
        for (const f of document.forms) {{
            if (decodeURIComponent(new URL(f.action).pathname).toLowerCase() !== {json.dumps(want)}) continue;
            if (f.method.toLowerCase() !== 'post' || !f.elements.namedItem('name')) continue;
            f.setAttribute('data-test-rename', '1');
            return true;
        }}
        return false; }})()"""
    for path in (f"/clients/{mac}", "/clients"):
        b.navigate(BASE + path)
        if b.status() == 200 and b.eval(find):
            break
    else:
        raise Fail(f"no form posting to {want} with a 'name' field on /clients/{mac} or /clients")
    b.fill('form[data-test-rename] [name="name"]', name)
    return b.submit("form[data-test-rename]")


def cmd_rename(b, mac, name):
    b.viewport(*DESKTOP)
    st = rename_form(b, mac, name)
    if st != 200:
        raise Fail(f"rename: the form's answer was HTTP {st} at {path_of(b.url())}: {text(b)[:300]!r}")
    go(b, "/clients", "clients page after the rename")
    row = b.eval(find_row_js(mac))
    if row is None or name not in row:
        raise Fail(f"/clients after the rename: the row of {mac} does not show {name!r}: {row!r}")
    ok(f"renamed {mac} to {name!r} through the form; /clients shows it")


XSS = '<img src=x onerror="window.__xss=1">'


def injected(b):
    time.sleep(0.5)  # the onerror of a failed image load runs after the load event
    return b.eval("window.__xss === 1 || !!document.querySelector('img[src=\"x\"]')")


def cmd_xss(b, mac):
    b.viewport(*DESKTOP)
    st = rename_form(b, mac, XSS)
    if injected(b):
        raise Fail(f"rename to markup: the answer page ran it (HTTP {st})")
    if st != 200:
        # Refusing such a name is fine too, as long as the refusal does not run it.
        ok(f"a device name with markup is refused (HTTP {st}) without running it")
        return
    # The dashboard need not show owner names; it must not run them either.
    for path, shown in (("/clients", True), (f"/clients/{mac}", True), ("/", False)):
        go(b, path, f"{path} with a markup name")
        if injected(b):
            raise Fail(f"{path}: a device name with markup was run as HTML")
        if shown and XSS not in text(b):
            raise Fail(f"{path}: the device name {XSS!r} is not shown as text")
    ok("a device name with markup is stored and shown as text on /clients and its page; "
       "no page (dashboard included) runs it")


# ---- port forward ----

def cmd_forward(b, proto, ext, ip, port):
    """The add form of gateway/templates/ports.html: protocol, external, inside_ip, inside_port."""
    b.viewport(*DESKTOP)
    go(b, "/ports", "ports page")
    form = 'form[action="/ports/forwards"][method="post"]'
    if not b.eval(f"!!document.querySelector({json.dumps(form)})"):
        raise Fail("/ports: no form posting to /ports/forwards")
    b.eval(f"document.querySelector({json.dumps(form + ' [name=protocol]')}).value = {json.dumps(proto)}")
    for name, value in (("external", ext), ("inside_ip", ip), ("inside_port", port)):
        b.fill(f"{form} [name={name}]", value)
    st = b.submit(form)
    if st != 200:
        raise Fail(f"add forward: HTTP {st} at {path_of(b.url())}: {text(b)[:300]!r}")
    err = b.eval("(document.querySelector('[role=alert]') || {}).innerText || ''")
    if err:
        raise Fail(f"add forward: the page says {err!r}")
    go(b, "/ports", "ports page after adding the forward")
    rows = b.eval("[...document.querySelectorAll('#forward-list tbody tr')].map(r => r.innerText)")
    if not any(ext in r and f"{ip}:{port}" in r for r in rows):
        raise Fail(f"/ports does not list the new forward {ext} -> {ip}:{port}: {rows}")
    ok(f"added forward {proto} {ext} -> {ip}:{port} through the form on /ports; it is listed there")


# ---- capture download ----

def cmd_pcap(b, mac, directory):
    b.viewport(*DESKTOP)
    go(b, "/", "dashboard")
    href = f"/api/capture/{mac.lower()}?format=pcap"
    sel = f"""[...document.querySelectorAll('a[href]')].find(a =>
        (decodeURIComponent(new URL(a.href).pathname) + new URL(a.href).search).toLowerCase() === {json.dumps(href)})"""
    if not b.eval(f"!!({sel})"):
        links = b.eval("[...document.querySelectorAll('a[href*=\"/api/capture/\"]')].map(a => a.getAttribute('href'))")
        raise Fail(f"dashboard: no link {href} (capture links: {links})")
    path = b.download(f"({sel}).click()", directory)
    ok(f"downloaded {os.path.basename(path)} through the dashboard's pcap link")
    print(path)


# ---- every page ----

CHECKS = r"""((width) => {
    const el = document.documentElement;
    const wide = [];
    const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                      (e.classList.length ? '.' + [...e.classList].join('.') : '');
    // Inside a sideways-scrolling box only what escapes it counts (absolutely positioned).
    const contained = e => e.closest('.scroll') && !['absolute', 'fixed'].includes(getComputedStyle(e).position);
    if (el.scrollWidth > width + 1) {
        for (const e of document.body.querySelectorAll('*')) {
            const r = e.getBoundingClientRect();
            if (r.right > width + 1 && !contained(e))
                wide.push(`${name(e)} ${Math.round(r.right)}px`);
        }
        // Text running out of its box (a long word, a URL).
        const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        const range = document.createRange();
        for (let t; (t = w.nextNode());) {
            if (!t.textContent.trim() || contained(t.parentElement)) continue;
            range.selectNodeContents(t);
            const r = range.getBoundingClientRect();
            if (r.right > width + 1)
                wide.push(`text in ${name(t.parentElement)} ${Math.round(r.right)}px: ${JSON.stringify(t.textContent.trim().slice(0, 40))}`);
        }
    }
    const unlabelled = [...document.querySelectorAll('input, select, textarea')].filter(e =>
        !['hidden', 'submit', 'button', 'reset', 'image'].includes(e.type) &&
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&
        !e.getAttribute('aria-labelledby')).map(e => e.outerHTML.slice(0, 100));
    return {scrollWidth: el.scrollWidth, innerWidth: window.innerWidth, wide: wide.slice(-6), unlabelled};
})"""

COLORS = r"""(() => {
    const cs = e => getComputedStyle(e);
    const probe = document.createElement('div');
    probe.style.cssText = 'background: Canvas; color: CanvasText; position: absolute; width: 0; height: 0';
    document.body.appendChild(probe);
    let bg = null;
    for (const e of [document.body, document.documentElement]) {
        const c = cs(e).backgroundColor;
        if (c && c !== 'transparent' && !/^rgba\(.*, 0\)$/.test(c)) { bg = c; break; }
    }
    if (!bg) bg = cs(probe).backgroundColor;
    const r = {bg, fg: cs(document.body).color, scheme: cs(document.documentElement).colorScheme};
    probe.remove();
    return r;
})()"""


def luminance(css):
    m = re.findall(r"[\d.]+", css)
    if len(m) < 3:
        return None
    r, g, b = (float(x) / 255 for x in m[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def slug(path, mac):
    if path == "/":
        return "dashboard"
    if mac and path.lower() == f"/clients/{mac.lower()}":
        return "client-detail"
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def cmd_pages(b, outdir, *paths):
    os.makedirs(outdir, exist_ok=True)
    mac = next((p.split("/")[2] for p in paths if p.startswith("/clients/")), None)
    failures = {}

    def check(path, cond, msg):
        if not cond:
            failures.setdefault(path, []).append(msg)
            print(f"FAIL: {path}: {msg}", file=sys.stderr, flush=True)
        return cond

    # Phone width: status, overflow, labels, light and dark, screenshots.
    b.viewport(*PHONE)
    for path in paths:
        s = slug(path, mac)
        b.color_scheme("light")
        try:
            b.navigate(BASE + path)
        except CDPError as e:
            check(path, False, f"did not load: {e}")
            continue
        st, at = b.status(), path_of(b.url())
        b.screenshot(os.path.join(outdir, f"{s}-360.png"))
        if not check(path, st == 200 and at == path, f"HTTP {st} at {at}, want 200 at {path}"):
            continue
        c = b.eval(f"{CHECKS}({PHONE[0]})")
        check(path, c["scrollWidth"] <= PHONE[0] + 1,
              f"overflows sideways at 360 px: scrollWidth {c['scrollWidth']} (too wide: {c['wide']})")
        check(path, not c["unlabelled"], f"form controls without a label: {c['unlabelled']}")
        light = b.eval(COLORS)
        b.color_scheme("dark")
        dark = b.eval(COLORS)
        b.screenshot(os.path.join(outdir, f"{s}-360-dark.png"))
        b.color_scheme("light")
        ll, ld, fl, fd = (luminance(x) for x in (light["bg"], dark["bg"], light["fg"], dark["fg"]))
        check(path, None not in (ll, ld, fl, fd), f"unreadable colours: light {light}, dark {dark}")
        if None not in (ll, ld, fl, fd):
            check(path, ll > fl and ld < fd and ld < ll - 0.3,
                  f"dark mode broken: light bg {light['bg']} / text {light['fg']}, dark bg {dark['bg']} / text {dark['fg']}")
        if path not in failures:
            ok(f"{path} 360 px: HTTP 200, no sideways overflow, every control labelled, "
               f"dark mode ({light['bg']} -> {dark['bg']})")

    # Desktop width: status and screenshots.
    b.viewport(*DESKTOP)
    for path in paths:
        s = slug(path, mac)
        try:
            b.navigate(BASE + path)
        except CDPError as e:
            check(path, False, f"did not load at 1280 px: {e}")
            continue
        st = b.status()
        b.screenshot(os.path.join(outdir, f"{s}-1280.png"))
        check(path, st == 200, f"HTTP {st} at 1280 px")
        if path not in failures:
            ok(f"{path} 1280 px: HTTP 200, screenshot {s}-1280.png")

    if failures:
        raise Fail(f"{len(failures)} of {len(paths)} pages failed: {' '.join(failures)}")
    ok(f"{len(paths)} pages checked; screenshots in {outdir}")


COMMANDS = {"setup": (cmd_setup, 1), "login": (cmd_login, 1), "leases": (cmd_leases, 2), "rename": (cmd_rename, 2),
            "xss": (cmd_xss, 1), "forward": (cmd_forward, 4), "pcap": (cmd_pcap, 2),
            "pages": (cmd_pages, None)}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        sys.exit(__doc__)
    fn, n = COMMANDS[argv[0]]
    args = argv[1:]
    if (n is not None and len(args) != n) or (n is None and len(args) < 2):
        sys.exit(__doc__)
    b = Browser(int(os.environ.get("CDP_PORT", 9222)))
    try:
        fn(b, *args)
    except (Fail, CDPError) as e:
        try:
            where = f" (browser at {b.url()})"
        except CDPError:
            where = ""
        print(f"FAIL: {argv[0]}: {e}{where}", file=sys.stderr, flush=True)
        return 1
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
