#!/usr/bin/env python3
"""Drives the call-centre console in headless Chromium over the DevTools
protocol (CDP), with nothing but the standard library (a minimal WebSocket
client is below).

Used by CallCentreTests' browser test, which runs the console and delivers
an alert to the desk once the page is connected:

    cdp_console.py --chromium /usr/bin/chromium --url http://127.0.0.1:PORT/ \
        --token TOKEN --agent NAME --alert-id VIN/EVENT --screenshot out.png

Steps: open the page; sign in through the page's form; wait for the row of
the alert (delivered over server-sent events, without reload: a marker set
on `window` before must still be there); click its Acknowledge button with
real mouse events; wait for the row to show "acknowledged by NAME"; save a
screenshot. Prints one JSON line per step; exits 0 on success, 1 with a
"FAIL: ..." line otherwise.
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse


class WebSocket:
    """Just enough RFC 6455 for CDP: text frames, client masking, large payloads."""

    def __init__(self, url, timeout):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError("websocket handshake refused: %r" % head[:200])

    def _exact(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("websocket closed")
            data += chunk
        return bytes(data)

    def send(self, text):
        payload = text.encode()
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        message = bytearray()
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("websocket closed by the browser")
            if opcode in (0x9, 0xA):  # ping/pong: ignore
                continue
            message += data
            if b0 & 0x80:
                return message.decode()


class CDP:
    """Commands on one flattened page session; events are dropped."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.session = None

    def call(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.receive())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page exception in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}")

    def click(self, selector):
        """A real click: mouse pressed and released at the element's centre."""
        box = self.evaluate(
            "(() => { const e = document.querySelector(%s); if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
            % json.dumps(selector))
        if not box:
            raise RuntimeError(f"nothing to click at {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1})


def step(name, **fields):
    print(json.dumps({"step": name, **fields}), flush=True)


def launch(chromium, profile):
    process = subprocess.Popen(
        [chromium, "--headless=new", "--remote-debugging-port=0", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}", "--window-size=1400,900",
         "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return process, match.group(1)
    process.kill()
    raise RuntimeError("chromium printed no DevTools URL: " + "".join(lines)[-2000:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--alert-id", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()

    profile = tempfile.mkdtemp(prefix="callcentre-chromium-")
    process = None
    try:
        process, ws_url = launch(args.chromium, profile)
        step("launched", devtools=ws_url)
        cdp = CDP(WebSocket(ws_url, args.timeout))
        target = cdp.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        cdp.call("Page.navigate", {"url": args.url})
        cdp.wait_for("document.readyState === 'complete' && document.body && document.body.dataset.ready === 'true'",
                     args.timeout, "the page and its event stream")
        cdp.evaluate("window.__notReloaded = true")
        step("loaded")

        # Sign in through the page's form (the token is asked for once).
        cdp.wait_for("!document.getElementById('login').hidden", args.timeout, "the sign-in form")
        cdp.click("#token")
        cdp.call("Input.insertText", {"text": args.token})
        cdp.click("#save-token")
        agent = cdp.wait_for("document.body.dataset.agent", args.timeout, "sign-in")
        if agent != args.agent:
            raise RuntimeError(f"signed in as {agent!r}, expected {args.agent!r}")
        stored = cdp.evaluate("localStorage.getItem('callcentre.token')")
        if stored != args.token:
            raise RuntimeError("the token was not kept in localStorage")
        step("signed-in", agent=agent)
        print("READY", flush=True)  # the test now delivers the alert to the desk

        row = 'tr[data-id=%s]' % json.dumps(args.alert_id)
        cdp.wait_for("!!document.querySelector(%s)" % json.dumps(row), args.timeout, "the alert's row")
        if not cdp.evaluate("window.__notReloaded === true"):
            raise RuntimeError("the page was reloaded")
        shown = cdp.evaluate(
            "(() => { const r = document.querySelector(%s); return {cls: r.className, text: r.innerText,"
            " p0: r.closest('table').id, lastP0: document.body.dataset.lastP0 || null}; })()" % json.dumps(row))
        step("alert-shown", **shown)
        if "acknowledged" in shown["cls"]:
            raise RuntimeError("the new alert is shown acknowledged")
        if shown["p0"] != "queue-P0":
            raise RuntimeError(f"the P0 alert is in {shown['p0']}, not the P0 queue")
        if shown["lastP0"] != args.alert_id:
            raise RuntimeError("no new-P0 cue (beep and flashing title) for the alert")

        cdp.click(row + " button.ack")
        status = cdp.wait_for(
            "(() => { const r = document.querySelector(%s); return r && r.classList.contains('acknowledged')"
            " ? r.querySelector('td.status').textContent : null; })()" % json.dumps(row),
            args.timeout, "the acknowledged state")
        if args.agent not in status:
            raise RuntimeError(f"status {status!r} does not name the agent")
        step("acknowledged", status=status)

        shot = cdp.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(args.screenshot, "wb") as f:
            f.write(base64.b64decode(shot))
        step("screenshot", path=args.screenshot)
        print("PASS", flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 - any failure fails the test with its message
        print(f"FAIL: {error}", flush=True)
        return 1
    finally:
        if process:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
