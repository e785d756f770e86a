#!/usr/bin/env python3
"""The real-browser test of `cargo xtask serve`: headless Chromium, driven over the W3C WebDriver
protocol by Debian's chromedriver, uses the page the way a person would (draws digits with the
mouse, pages through the test set, edits the apple graph, trains a net) and checks what it shows.

    python3 xtask/tests/browser/serve_browser.py --out target/browser -- \\
        target/release/xtask serve --port 0 --model PATH

The training check keeps a run: the server writes it into runs/ unless given `--runs DIR` (a
scratch folder, say). The command after `--` must print `serving on http://HOST:PORT/` first. Python's standard library
only (a WebDriver client is a few HTTP calls); needs /usr/bin/chromedriver and /usr/bin/chromium.
Writes full.png and one PNG per panel (draw, test, apple, train) into --out, and failure.png when a
check fails. Exits 0 when every check passes, 1 on the first failure, 2 on a usage error.

Synchronisation is by polling a condition with a deadline (`wait_for`), never by sleeping alone.
Each check prints one line with its duration.
"""
import argparse
import base64
import collections
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
# --no-sandbox: Chromium refuses to start as root otherwise (CI containers).
# --disable-background-networking and friends: no calls home on a closed network.
CHROME_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1800",
]
# The key under which WebDriver names an element (W3C WebDriver, "web element identifier").
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class CheckFailed(Exception):
    """A check saw something other than what it expected; the message says both."""


def wait_for(what, probe, accept, timeout, interval=0.1):
    """Calls probe() until accept(value) holds, and returns that value; after `timeout` seconds
    fails saying what it waited for and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise CheckFailed(f"waited {timeout:g} s for {what}; last seen: {value!r}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A WebDriver client: each command is one HTTP request with a JSON body, answered with
# {"value": ...}; an error is a 4xx/5xx status with {"value": {"error", "message"}}.

class WebDriverError(Exception):
    pass


class WebDriver:
    def __init__(self, port):
        self.port = port
        self.session = None

    def request(self, method, path, body=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json; charset=utf-8"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            value = json.loads(raw).get("value") if raw else None
        except ValueError:
            raise WebDriverError(f"{method} {path}: HTTP {response.status}, not JSON: {raw[:200]!r}")
        if response.status >= 400:
            error = value if isinstance(value, dict) else {}
            kind = str(error.get("error", f"HTTP {response.status}"))
            message = (error.get("message") or "").split("\n")[0]
            if not message.startswith(kind):
                message = f"{kind}: {message}"
            raise WebDriverError(f"{method} {path}: {message}")
        return value

    def command(self, method, path, body=None):
        return self.request(method, f"/session/{self.session}{path}", body)

    def start_session(self, user_data_dir):
        capabilities = {"alwaysMatch": {
            "goog:chromeOptions": {"binary": CHROMIUM, "args": CHROME_ARGS + [f"--user-data-dir={user_data_dir}"]},
            "goog:loggingPrefs": {"browser": "ALL"}}}  # the page's console, read by check_console
        value = self.request("POST", "/session", {"capabilities": capabilities})
        self.session = value["sessionId"]

    def quit(self):
        if self.session is not None:
            session, self.session = self.session, None
            self.request("DELETE", f"/session/{session}", timeout=30)

    def get(self, url):
        self.command("POST", "/url", {"url": url})

    def find(self, css):
        return self.command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        return [e[ELEMENT] for e in self.command("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, element):
        return self.command("GET", f"/element/{element}/text")

    def attribute(self, element, name):
        return self.command("GET", f"/element/{element}/attribute/{name}")

    def click(self, element):
        self.command("POST", f"/element/{element}/click", {})

    def clear(self, element):
        self.command("POST", f"/element/{element}/clear", {})

    def send_keys(self, element, text):
        self.command("POST", f"/element/{element}/value", {"text": text})

    def execute(self, script, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def perform(self, actions):
        self.command("POST", "/actions", {"actions": actions})
        self.command("DELETE", "/actions")

    def console(self):
        """The browser console's entries since the last call (chromedriver's legacy log endpoint)."""
        return self.command("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path, element=None):
        where = f"/element/{element}/screenshot" if element else "/screenshot"
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.command("GET", where)))

    def full_page_screenshot(self, path):
        """The whole page, beyond the window if it is taller (Chromium's DevTools command, which
        chromedriver passes through); the window alone if that is refused."""
        try:
            metrics = self.command("POST", "/goog/cdp/execute", {"cmd": "Page.getLayoutMetrics", "params": {}})
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = self.command("POST", "/goog/cdp/execute", {"cmd": "Page.captureScreenshot", "params": {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}})
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        except (WebDriverError, KeyError) as e:
            print(f"  (full-page capture refused ({e}); the window only)")
            self.screenshot(path)


# ---------------------------------------------------------------------------------------------
# The server and chromedriver processes

class Server:
    """The command under test. Its stdout is read by a thread all along (a full pipe would block
    the server); the last lines are kept to show when something fails."""

    def __init__(self, command):
        self.command = command
        self.lines = collections.deque(maxlen=60)
        self.first_lines = queue.Queue()
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                            text=True, bufsize=1, start_new_session=True)
        except OSError as e:
            raise CheckFailed(f"cannot start {command[0]}: {e}")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self.first_lines.put(line)
        self.first_lines.put(None)

    def wait_for_url(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.first_lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise CheckFailed(f"the server printed no `serving on http://...` line within {timeout:g} s")
            if line is None:
                status = self.process.wait()
                raise CheckFailed(f"the server exited with status {status} before printing `serving on http://...`")
            match = re.fullmatch(r"serving on (http://\S+?)/?", line.strip())
            if match:
                return match.group(1) + "/"

    def tail(self):
        return "\n".join(f"  [server] {line}" for line in self.lines)


def start_chromedriver(log_path):
    port = free_port()
    log = open(log_path, "wb")
    try:
        process = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise CheckFailed(f"cannot start {CHROMEDRIVER}: {e} (Debian: apt-get install chromium-driver)")
    finally:
        log.close()
    driver = WebDriver(port)

    def ready():
        if process.poll() is not None:
            raise CheckFailed(f"chromedriver exited with status {process.returncode}; see {log_path}")
        try:
            return driver.request("GET", "/status", timeout=2).get("ready")
        except (OSError, WebDriverError):
            return False

    wait_for("chromedriver to be ready", ready, bool, 20)
    return process, driver


def stop_group(process, sig, timeout):
    """Sends `sig` to the process group we started (chromedriver and the browsers it ran) and waits."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)


# ---------------------------------------------------------------------------------------------
# The checks. Each returns a short line saying what it saw.

def text_of(wd, css):
    return wd.text(wd.find(css))


def draw_stroke(wd, canvas, points, step_px=8, step_ms=10):
    """One mouse stroke through `points` (offsets from the canvas's centre, in CSS pixels), moved
    in steps of about `step_px` so the page sees a stream of pointermove events."""
    origin = {ELEMENT: canvas}
    moves = [{"type": "pointerMove", "duration": 0, "origin": origin, "x": points[0][0], "y": points[0][1]},
             {"type": "pointerDown", "button": 0}]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        steps = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) / step_px))
        for k in range(1, steps + 1):
            moves.append({"type": "pointerMove", "duration": step_ms, "origin": origin,
                          "x": round(x0 + (x1 - x0) * k / steps), "y": round(y0 + (y1 - y0) * k / steps)})
    moves.append({"type": "pointerUp", "button": 0})
    wd.perform([{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": moves}])


def read_prediction(wd, timeout):
    """The digit shown once the page's last prediction is in (the panel's data-busy is "0")."""
    panel = wd.find("#panel-draw")
    predicted = wd.find("#draw-predicted")
    wait_for("the drawing's prediction", lambda: (wd.attribute(panel, "data-busy"), wd.text(predicted)),
             lambda v: v[0] == "0" and v[1] != "", timeout)
    return wd.text(predicted), " ".join(text_of(wd, "#draw-bars").split())


def check_page(wd, url, args):
    wd.get(url)
    panels = ["#panel-draw", "#panel-test", "#panel-apple", "#panel-train"]
    missing = [p for p in panels if not wd.find_all(p)]
    if missing:
        title = wd.execute("return document.title;")
        raise CheckFailed(f"the page at {url} (title {title!r}) has no {', '.join(missing)}")
    # The chooser's note says why the list is empty (no model given, or the request failed).
    options, info = wait_for("#model-select to list a model",
                             lambda: (len(wd.find_all("#model-select option")), text_of(wd, "#model-info")),
                             lambda v: v[0] > 0, args.timeout)
    chosen = wd.execute("const s = document.querySelector('#model-select');"
                        "return s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : null;")
    return f"{options} model(s), selected {chosen}"


def check_draw(wd, args):
    canvas = wd.find("#draw-canvas")
    wd.execute("arguments[0].scrollIntoView({block: 'center'});", {ELEMENT: canvas})
    seen = []
    # A "1": one vertical stroke down the middle. A "7": a bar near the top, then a diagonal down
    # to the bottom left. Offsets are from the 280 px canvas's centre.
    for digit, strokes in [("1", [[(0, -100), (0, 100)]]),
                           ("7", [[(-80, -95), (75, -95), (-25, 105)]])]:
        wd.click(wd.find("#draw-clear"))
        wait_for("#draw-predicted to empty after Clear", lambda: text_of(wd, "#draw-predicted"), lambda t: t == "", 5)
        for points in strokes:
            draw_stroke(wd, canvas, points)
        got, bars = read_prediction(wd, args.timeout)
        print(f"  drew a {digit}: the page predicts {got!r}")
        if got != digit:
            raise CheckFailed(f"drew a {digit}, the page predicts {got!r}; probabilities: {bars}")
        seen.append(got)
    activations = wd.find_all("#draw-activations canvas")
    if not activations:
        raise CheckFailed("#draw-activations shows no activations")
    wd.screenshot(os.path.join(args.out, "draw.png"), wd.find("#panel-draw"))
    return f"read {' then '.join(seen)}"


def check_test_set(wd, args):
    position = wait_for("#test-position to show 'K / TOTAL' (the first request scores the test set)",
                        lambda: text_of(wd, "#test-position"), lambda t: re.fullmatch(r"\d+ / \d+", t), args.timeout)
    misclassified_text = text_of(wd, "#test-misclassified")
    match = re.search(r"(\d+) misclassified", misclassified_text)
    if not match:
        raise CheckFailed(f"#test-misclassified does not say how many are misclassified: {misclassified_text!r}")
    misclassified = int(match.group(1))
    label, predicted = text_of(wd, "#test-label"), text_of(wd, "#test-predicted")
    if misclassified > 0 and label == predicted:
        raise CheckFailed(f"position 0 should be misclassified ({misclassified} are), yet label {label!r} = predicted {predicted!r}")
    if misclassified == 0 and label != predicted:
        raise CheckFailed(f"none is misclassified, yet position 0 has label {label!r} and predicted {predicted!r}")
    wd.click(wd.find("#test-next"))
    after = wait_for("#test-next to change #test-position", lambda: text_of(wd, "#test-position"),
                     lambda t: t != position and re.fullmatch(r"\d+ / \d+", t), args.timeout)
    wd.screenshot(os.path.join(args.out, "test.png"), wd.find("#panel-test"))
    return f"{position} -> {after}, {misclassified} misclassified, position 0: label {label}, predicted {predicted}"


def check_apple(wd, args):
    expected = {"fwd-price": "715", "fwd-apple_total": "200", "fwd-orange_total": "450", "fwd-all_total": "650",
                "grad-apple_price": "2.2", "grad-apple_count": "110", "grad-orange_price": "3.3",
                "grad-orange_count": "165", "grad-tax": "650", "grad-price": "1", "grad-all_total": "1.1"}
    read_all = lambda: {id: text_of(wd, f"#{id}") for id in expected}
    wait_for("the apple graph's numbers at the book's defaults", read_all, lambda v: v == expected, args.timeout)
    count = wd.find("#apple-count")
    wd.clear(count)
    wd.send_keys(count, "4")
    # (100*4 + 150*3) * 1.1 = 935; d price / d apple_price = 4 * 1.1 = 4.4
    after = {"fwd-price": "935", "grad-apple_price": "4.4"}
    wait_for("#fwd-price 935 and #grad-apple_price 4.4 after apple count = 4",
             lambda: {id: text_of(wd, f"#{id}") for id in after}, lambda v: v == after, args.timeout)
    wd.screenshot(os.path.join(args.out, "apple.png"), wd.find("#panel-apple"))
    return "715 at the defaults (gradients 2.2 110 3.3 165 650); 935 and 4.4 with 4 apples"


def choose(wd, select_css, value):
    wd.click(wd.find(f"{select_css} option[value='{value}']"))


def set_field(wd, css, text):
    field = wd.find(css)
    wd.clear(field)
    wd.send_keys(field, text)


def check_train(wd, args):
    model_values = lambda: wd.execute(
        "return [...document.querySelectorAll('#model-select option')].map(o => o.value);")
    before = set(model_values())
    choose(wd, "#train-model", "mlp")
    choose(wd, "#train-optimizer", "sgd")
    set_field(wd, "#train-lr", "0.1")
    set_field(wd, "#train-epochs", str(args.train_epochs))
    state_el, curve = wd.find("#train-state"), wd.find("#train-curve")
    wd.click(wd.find("#train-start"))

    def reading():
        state = wd.text(state_el)
        return time.monotonic(), state, int(wd.attribute(curve, "data-points") or 0)

    # While running, keep readings until two of them show the curve growing.
    running = []
    grew = None
    deadline = time.monotonic() + args.timeout
    while True:
        t, state, points = reading()
        if state == "failed":
            raise CheckFailed(f"training failed: {text_of(wd, '#train-error')}")
        if state == "running":
            earlier = [p0 for _, p0 in running if p0 < points]
            running.append((t, points))
            if earlier:
                grew = (earlier[0], points)
                break
        elif state in ("finished", "stopped"):
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"waited {args.timeout:g} s for the run to run and its curve to grow; "
                              f"state {state!r}, data-points {points}, readings while running {running}")
        time.sleep(0.1)

    if grew:
        how = f"curve grew while running ({grew[0]} -> {grew[1]} points)"
        if not args.let_training_finish:
            wd.click(wd.find("#train-stop"))
            how += ", then Stop"
    else:
        # The run ended before two readings while it ran (a fast machine):
        # its curve must still have been drawn.
        first = next((p for _, p in running if p > 0), 0)
        if points <= first:
            raise CheckFailed(f"the run {state} without its curve growing (last reading while running "
                              f"{first}, final {points})")
        how = f"run {state} before two live readings; curve {first} -> {points} points"
    print(f"  {how}")
    final = wait_for("#train-state to be finished or stopped", lambda: wd.text(state_el),
                     lambda s: s in ("finished", "stopped", "failed"), args.train_timeout, interval=0.25)
    if final == "failed":
        raise CheckFailed(f"training failed: {text_of(wd, '#train-error')}")
    error = text_of(wd, "#train-error")
    if error:
        print(f"  #train-error says: {error}")  # e.g. Stop just as the run finished: 409, harmless

    # The saved run becomes a model, selected in the chooser.
    def chooser():
        return set(model_values()), wd.execute("return document.querySelector('#model-select').value;")
    values, selected = wait_for("a new model in #model-select, selected", chooser,
                                lambda v: v[1] in (v[0] - before), args.timeout)
    name = wd.execute("const s = document.querySelector('#model-select');"
                      "return s.options[s.selectedIndex].text;")
    points = int(wd.attribute(curve, "data-points") or 0)
    wd.screenshot(os.path.join(args.out, "train.png"), wd.find("#panel-train"))
    return f"{how}; {final} with {points} loss points; new model {name} selected"


def check_console(wd):
    """No uncaught exception or console.error on the page. A refused request also logs an error
    ("Failed to load resource: ... 409"); the page shows those itself, so they are only listed."""
    entries = [e for e in wd.console() if e.get("level") == "SEVERE"]
    refused = [e["message"] for e in entries if "Failed to load resource" in e.get("message", "")]
    errors = [e["message"] for e in entries if "Failed to load resource" not in e.get("message", "")]
    for message in refused:
        print(f"  (refused request, shown by the page: {message})")
    if errors:
        raise CheckFailed("the browser console has errors:\n    " + "\n    ".join(errors))
    return f"no errors ({len(refused)} refused request(s))"


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    if "--" not in argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        print("error: give the server command after `--`", file=sys.stderr)
        sys.exit(2)
    split = argv.index("--")
    parser = argparse.ArgumentParser(description="Real-browser test of cargo xtask serve.",
                                     usage="%(prog)s [options] -- SERVER COMMAND...")
    parser.add_argument("--out", default="target/browser", help="where the screenshots go")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds to wait for any one thing to show (default 120; scoring the test set can take a while)")
    parser.add_argument("--train-epochs", type=int, default=5,
                        help="epochs of the training run (600 steps each; it is stopped once its curve grows)")
    parser.add_argument("--train-timeout", type=float, default=600, help="seconds the training run may take")
    parser.add_argument("--let-training-finish", action="store_true",
                        help="wait for the run to finish instead of pressing Stop once its curve grows")
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if not args.command:
        parser.error("the server command after `--` is empty")
    return args


def stop_server(server):
    """SIGINT, as Ctrl-C would: the server must stop within 30 s with status 130."""
    if server.process.poll() is not None:
        raise CheckFailed(f"the server had already exited with status {server.process.returncode}")
    server.process.send_signal(signal.SIGINT)
    try:
        status = server.process.wait(30)
    except subprocess.TimeoutExpired:
        raise CheckFailed("the server was still running 30 s after SIGINT")
    if status != 130:
        raise CheckFailed(f"the server exited with status {status} after SIGINT, not 130")
    return "exit status 130 after SIGINT"


def main(argv):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for stale in ["failure.png", "full.png", "draw.png", "test.png", "apple.png", "train.png"]:
        if os.path.exists(os.path.join(args.out, stale)):
            os.remove(os.path.join(args.out, stale))  # a screenshot left by an earlier run would mislead
    started = time.monotonic()
    server = chromedriver = wd = url = None
    user_data_dir = tempfile.mkdtemp(prefix="serve-browser-")
    failed = False

    def check(name, run):
        """Runs one check and prints its line; any exception fails it (and the run)."""
        t0 = time.monotonic()
        try:
            detail = run()
        except Exception as e:
            kind = "" if isinstance(e, (CheckFailed, WebDriverError)) else f"{type(e).__name__}: "
            print(f"FAIL  {name} ({time.monotonic() - t0:.2f} s): {kind}{e}", flush=True)
            raise CheckFailed(str(e)) from e
        print(f"ok    {name} ({time.monotonic() - t0:.2f} s): {detail}", flush=True)

    def start_server():
        nonlocal server, url
        server = Server(args.command)
        url = server.wait_for_url(60)
        return url

    def start_browser():
        nonlocal chromedriver, wd
        chromedriver, wd = start_chromedriver(os.path.join(args.out, "chromedriver.log"))
        wd.start_session(user_data_dir)
        return f"chromedriver on port {wd.port}"

    def full_page():
        wd.full_page_screenshot(os.path.join(args.out, "full.png"))
        return f"screenshots in {args.out}: full.png draw.png test.png apple.png train.png"

    try:
        check("server starts", start_server)
        check("browser starts", start_browser)
        check("page loads", lambda: check_page(wd, url, args))
        check("draw", lambda: check_draw(wd, args))
        check("test set", lambda: check_test_set(wd, args))
        check("apple graph", lambda: check_apple(wd, args))
        check("train", lambda: check_train(wd, args))
        check("full-page screenshot", full_page)
        check("browser console", lambda: check_console(wd))
    except CheckFailed:
        failed = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed = True
    finally:
        # Clean up whatever happened: the browser, chromedriver, then the server.
        if failed and wd is not None and wd.session is not None:
            try:
                wd.screenshot(os.path.join(args.out, "failure.png"))
                print(f"  the page when it failed: {os.path.join(args.out, 'failure.png')}")
            except (OSError, WebDriverError):
                pass
        if wd is not None:
            try:
                wd.quit()
            except (OSError, WebDriverError) as e:
                print(f"  could not close the browser session: {e}", file=sys.stderr)
        stop_group(chromedriver, signal.SIGTERM, 10)
        shutil.rmtree(user_data_dir, ignore_errors=True)
        if server is not None:
            if url is not None:  # it served: it must also stop cleanly
                try:
                    check("server stops on SIGINT", lambda: stop_server(server))
                except CheckFailed:
                    failed = True
            stop_group(server.process, signal.SIGKILL, 10)
            if failed and server.lines:
                print("the server's last output lines:\n" + server.tail())
    print(f"{'FAILED' if failed else 'passed'} in {time.monotonic() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
