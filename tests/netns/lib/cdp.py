#!/usr/bin/python3
"""A small Chrome DevTools Protocol client for the browser tests (Debian's python3-websocket).

As a library:

    from cdp import Browser
    b = Browser(9222)                      # the first page of chromium --remote-debugging-port=9222
    b.viewport(360, 800, scale=2, mobile=True)
    status = b.navigate("http://192.168.1.1:8080/")   # waits for the load event; HTTP status
    title = b.eval("document.title")
    b.act("document.querySelector('form').requestSubmit()")   # and waits for the next page
    b.screenshot("page.png")               # the full page
    path = b.download("document.querySelector('a.pcap').click()", "/tmp/dl")

As a command: `cdp.py wait PORT [SECONDS]` waits for the DevTools endpoint; `cdp.py eval PORT
URL JS` loads URL and prints the value of JS as JSON.

A load waits for the load event, then for the page to settle (its own requests, such as
the favicon, done), as a person would before touching it. CDP_BLOCK_URLS (space-separated
patterns, e.g. "*/favicon.ico") are never fetched. Every wait has a timeout
(CDP_LOAD_TIMEOUT, CDP_CALL_TIMEOUT, default 30 s); every failure raises CDPError saying what
was being waited for."""
import base64
import json
import os
import sys
import time
import urllib.request

import websocket

LOAD_TIMEOUT = float(os.environ.get("CDP_LOAD_TIMEOUT", 30))
CALL_TIMEOUT = float(os.environ.get("CDP_CALL_TIMEOUT", 30))


class CDPError(Exception):
    pass


def endpoint(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def wait_endpoint(port, secs=30):
    """Waits until the DevTools HTTP endpoint answers; returns /json/version."""
    end = time.time() + secs
    last = None
    while time.time() < end:
        try:
            return endpoint(port, "/json/version", timeout=2)
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.2)
    raise CDPError(f"no DevTools endpoint on 127.0.0.1:{port} within {secs:.0f} s ({last})")


class Connection:
    """One WebSocket to a target: commands with ids, events kept in a queue until read."""

    def __init__(self, url):
        # No Origin header: chromium refuses DevTools sockets from unlisted origins.
        self.ws = websocket.create_connection(url, timeout=CALL_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    def _recv(self, deadline, what):
        left = deadline - time.time()
        if left <= 0:
            raise CDPError(f"timed out waiting for {what}")
        self.ws.settimeout(left)
        try:
            msg = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            raise CDPError(f"timed out waiting for {what}") from None
        except websocket.WebSocketConnectionClosedException:
            raise CDPError(f"browser closed the connection while waiting for {what}") from None
        return json.loads(msg)

    def call(self, method, timeout=CALL_TIMEOUT, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            m = self._recv(deadline, f"the answer to {method}")
            if m.get("id") == mid:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error'].get('message')} {m['error'].get('data', '')}".strip())
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def drain(self):
        self.events.clear()

    def pump(self, secs):
        """Queues the events that arrive within secs."""
        deadline = time.time() + secs
        while True:
            try:
                m = self._recv(deadline, "events")
            except CDPError:
                if time.time() >= deadline:
                    return
                raise
            if "method" in m:
                self.events.append(m)

    def wait_event(self, name, timeout=LOAD_TIMEOUT, pred=lambda p: True):
        """The params of the first queued or arriving event `name` for which pred holds."""
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["method"] == name and pred(e.get("params", {})):
                    del self.events[i]
                    return e.get("params", {})
            m = self._recv(deadline, f"event {name}")
            if "method" in m:
                self.events.append(m)


class Browser:
    """The first ordinary page of a running chromium, driven through its own WebSocket."""

    def __init__(self, port):
        self.port = port
        wait_endpoint(port)
        pages = [t for t in endpoint(port, "/json/list") if t.get("type") == "page"]
        if not pages:
            raise CDPError(f"no page target on port {port}")
        self.page = Connection(pages[0]["webSocketDebuggerUrl"])
        self.page.call("Page.enable")
        self.page.call("Runtime.enable")
        # Network events tell when a page has settled (its favicon and other requests done).
        self.page.call("Network.enable")
        block = os.environ.get("CDP_BLOCK_URLS", "").split()
        if block:
            self.page.call("Network.setBlockedURLs", urls=block)
        self.width = None

    def close(self):
        self.page.close()

    # ---- page state ----

    def viewport(self, width, height, scale=1, mobile=False):
        self.page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                       deviceScaleFactor=scale, mobile=mobile)
        self.width = width

    def color_scheme(self, scheme):
        """'dark', 'light', or '' for the system's."""
        feats = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
        self.page.call("Emulation.setEmulatedMedia", features=feats)

    # ---- navigation ----

    def _wait_loaded(self, what):
        self.page.wait_event("Page.loadEventFired", LOAD_TIMEOUT)
        # The load event of the new document; readyState settles it against stragglers.
        end = time.time() + LOAD_TIMEOUT
        while self.eval("document.readyState") != "complete":
            if time.time() > end:
                raise CDPError(f"{what}: document not complete after {LOAD_TIMEOUT:.0f} s")
            time.sleep(0.1)
        self.settle()
        return self.status()

    def requests(self):
        """{requestId: (url, finished)} of the requests since the last navigation began."""
        reqs = {}
        for e in self.page.events:
            p = e.get("params", {})
            if e["method"] == "Network.requestWillBeSent":
                reqs[p["requestId"]] = (p["request"]["url"], False)
            elif e["method"] in ("Network.loadingFinished", "Network.loadingFailed") and p["requestId"] in reqs:
                reqs[p["requestId"]] = (reqs[p["requestId"]][0], True)
        return reqs

    def set_cookies(self, name):
        """The URLs whose answers (since the last navigation began) set cookie `name`."""
        urls = {}
        for e in self.page.events:
            p = e.get("params", {})
            if e["method"] == "Network.requestWillBeSent":
                # A redirect keeps the request's id: show the whole chain.
                prev = urls.get(p["requestId"]) if "redirectResponse" in p else None
                urls[p["requestId"]] = (prev + " -> " if prev else "") + p["request"]["url"]
            if e["method"] == "Network.responseReceivedExtraInfo":
                h = {k.lower(): v for k, v in p.get("headers", {}).items()}
                if any(c.strip().startswith(name + "=") for c in h.get("set-cookie", "").split("\n")):
                    yield urls.get(p["requestId"], "?") + f" (HTTP {p.get('statusCode')})"

    def settle(self, quiet=0.5, timeout=10):
        """Waits until the page's requests (favicon, images) are done and none has started
        for `quiet` seconds, as a person would before using the page; at most `timeout`."""
        # Only requests count: a page's WebSocket may send frames all the time.
        def n_requests():
            return sum(e["method"] in ("Network.requestWillBeSent", "Network.loadingFinished",
                                       "Network.loadingFailed") for e in self.page.events)
        end = time.time() + timeout
        while time.time() < end:
            n = n_requests()
            self.page.pump(quiet)
            if n_requests() == n and all(done for _, done in self.requests().values()):
                return
        pending = [u for u, done in self.requests().values() if not done]
        raise CDPError(f"page did not settle within {timeout} s; pending requests: {pending}")

    def cookie(self, name):
        """The value of cookie `name` for the current page (HttpOnly ones too), or None."""
        for c in self.page.call("Network.getCookies", urls=[self.url()])["cookies"]:
            if c["name"] == name:
                return c["value"]
        return None

    def navigate(self, url):
        """Loads url, waits for its load event; returns the HTTP status of the document."""
        self.page.drain()
        r = self.page.call("Page.navigate", url=url, timeout=LOAD_TIMEOUT)
        # An HTTP error with an empty body: chromium shows its error page; status() tells.
        if r.get("errorText") and r["errorText"] != "net::ERR_HTTP_RESPONSE_CODE_FAILURE":
            raise CDPError(f"navigate {url}: {r['errorText']}")
        if "loaderId" not in r:
            # Same-document navigation (only the fragment changed): nothing loads.
            return self.status()
        return self._wait_loaded(f"navigate {url}")

    def act(self, js):
        """Runs js, which must start a navigation (a form submit, a click on a link), and
        waits for the next document to load; returns its HTTP status."""
        self.page.drain()
        self.eval(js)
        return self._wait_loaded(f"after {js[:60]!r}")

    def document(self):
        """(HTTP status, URL) of the last document received since the navigation began
        (after redirects; also when chromium shows its own error page instead)."""
        for e in reversed(self.page.events):
            p = e.get("params", {})
            if e["method"] == "Network.responseReceived" and p.get("type") == "Document":
                return p["response"]["status"], p["response"]["url"]
        st = self.eval("(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0")
        return st, self.url()

    def status(self):
        """The HTTP status of the current document (0 if the browser does not say)."""
        return self.document()[0]

    def url(self):
        """The document's URL (the one that failed, on chromium's error page)."""
        href = self.eval("location.href")
        return self.document()[1] if href.startswith("chrome-error:") else href

    # ---- DOM ----

    def eval(self, js, timeout=CALL_TIMEOUT):
        """The value of the JS expression (awaited if it is a promise), as JSON."""
        r = self.page.call("Runtime.evaluate", timeout=timeout, expression=js, returnByValue=True,
                           awaitPromise=True, userGesture=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            msg = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"JS error in {js[:80]!r}: {msg}")
        return r.get("result", {}).get("value")

    def fill(self, selector, value):
        """Sets an input's value as typing would (input and change events)."""
        ok = self.eval(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return false;
            e.focus(); e.value = {json.dumps(value)};
            e.dispatchEvent(new Event('input', {{bubbles: true}}));
            e.dispatchEvent(new Event('change', {{bubbles: true}}));
            return true; }})()""")
        if not ok:
            raise CDPError(f"fill: no element {selector} on {self.url()}")

    def submit(self, selector):
        """Submits the form `selector` (or the form of the element `selector`), as its
        submit button would, and waits for the answer page; returns its HTTP status."""
        found = self.eval(f"!!document.querySelector({json.dumps(selector)})")
        if not found:
            raise CDPError(f"submit: no element {selector} on {self.url()}")
        return self.act(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            const f = e.tagName === 'FORM' ? e : e.form;
            f.requestSubmit(); }})()""")

    # ---- files ----

    def screenshot(self, path):
        """A PNG of the whole page (beyond the viewport), at the viewport's scale."""
        m = self.page.call("Page.getLayoutMetrics")
        size = m.get("cssContentSize") or m["contentSize"]
        w = max(self.width or 0, int(size["width"] + 0.5))
        h = int(size["height"] + 0.5)
        r = self.page.call("Page.captureScreenshot", timeout=60, format="png", captureBeyondViewport=True,
                           clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def download(self, js, directory, timeout=LOAD_TIMEOUT):
        """Runs js (a click on a download link), waits for the download to finish in
        directory; returns the file's path."""
        os.makedirs(directory, exist_ok=True)
        before = set(os.listdir(directory))
        b = Connection(endpoint(self.port, "/json/version")["webSocketDebuggerUrl"])
        try:
            b.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=os.path.abspath(directory),
                   eventsEnabled=True)
            self.eval(js)
            begin = b.wait_event("Browser.downloadWillBegin", timeout)
            name = begin.get("suggestedFilename", "")
            done = b.wait_event("Browser.downloadProgress", timeout,
                                lambda p: p.get("guid") == begin["guid"] and p.get("state") in ("completed", "canceled"))
            if done["state"] != "completed":
                raise CDPError(f"download of {begin.get('url')} canceled")
        finally:
            b.close()
        # The file is renamed from its .crdownload just after the event: wait for it.
        end = time.time() + 10
        while time.time() < end:
            new = sorted(f for f in set(os.listdir(directory)) - before if not f.endswith(".crdownload"))
            if new:
                return os.path.join(directory, name if name in new else new[0])
            time.sleep(0.1)
        raise CDPError(f"download {name!r} completed but no file appeared in {directory}")


def main(argv):
    if len(argv) >= 2 and argv[0] == "wait":
        v = wait_endpoint(int(argv[1]), float(argv[2]) if len(argv) > 2 else 30)
        print(v.get("Browser", "?"))
    elif len(argv) == 4 and argv[0] == "eval":
        b = Browser(int(argv[1]))
        b.navigate(argv[2])
        print(json.dumps(b.eval(argv[3])))
        b.close()
    else:
        sys.exit("usage: cdp.py wait PORT [SECONDS] | cdp.py eval PORT URL JS")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CDPError as e:
        sys.exit(f"cdp: {e}")
