"""Setup for bench/otp_check.sh: prove the check endpoint behaves, then create verifications to check.

Usage: otp_setup.py BASE_URL IDS_FILE [COUNT=20000] [SECONDS=40]

The API key comes from TSUNAGI_BENCH_KEY. Prints one `SETUP created=N seconds=S` line on stdout;
exits non-zero on any unexpected answer, because a benchmark on top of a broken setup would measure
the wrong thing (e.g. 429 `rate_limited` from anti-fraud limits instead of checks).
"""

import concurrent.futures
import http.client
import itertools
import json
import os
import re
import sys
import threading
import time
import urllib.parse

KEY = os.environ["TSUNAGI_BENCH_KEY"]
# 16 connections keep both server cores busy; more only queue behind the single SQLite writer.
WORKERS = 16
# 090-1000-0000 upwards: valid mobiles, all distinct so no per-number limit is ever in play.
FIRST_NUMBER = 9010000000
# The sandbox makes these endings fail on purpose.
SANDBOX_FAILURES = ("9990", "9991", "9992")
# Outside the bulk range, so the probe cannot cancel a bulk verification (a new code cancels the
# number's pending ones).
PROBE_NUMBER = "080-2000-0001"


class Client:
    """One keep-alive connection: a new TCP connection per request would dominate setup time."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")


def expect(what, got, status):
    if got[0] != status:
        sys.exit(f"probe: {what}: expected HTTP {status}, got {got[0]} {got[1]}")
    return got[1]


def probe(base):
    """One verification end to end, so that the 422s the benchmark counts are known to mean
    "wrong code" and not a broken endpoint."""
    c = Client(base)
    v = expect("send", c.call("POST", "/v1/otp", {"to": PROBE_NUMBER}), 201)
    vid = v["verification_id"]
    code = None
    query = urllib.parse.urlencode({"to": PROBE_NUMBER})
    deadline = time.monotonic() + 10
    while code is None and time.monotonic() < deadline:
        inbox = expect("inbox", c.call("GET", f"/v1/sandbox/inbox?{query}"), 200)
        for item in inbox:
            m = re.search(r"認証コード: (\d+)", item["body"])
            if m:
                code = m.group(1)
                break
        else:
            time.sleep(0.1)
    if code is None:
        sys.exit("probe: the code never reached the sandbox inbox")
    check = f"/v1/otp/{vid}/check"
    # The very code otp_check.lua sends.
    p = expect("wrong code", c.call("POST", check, {"code": "0000000"}), 422)
    if p.get("code") != "otp_incorrect" or p.get("attempts_left") != 4:
        sys.exit(f"probe: wrong code answered {p}")
    expect("right code", c.call("POST", check, {"code": code}), 200)
    expect("reuse", c.call("POST", check, {"code": code}), 409)


def numbers():
    for i in itertools.count():
        n = f"0{FIRST_NUMBER + i}"
        if not n.endswith(SANDBOX_FAILURES):
            yield n


def create(base, count, seconds):
    source = numbers()
    lock = threading.Lock()
    ids = []
    issued = 0
    deadline = time.monotonic() + seconds

    def worker():
        nonlocal issued
        c = Client(base)
        while time.monotonic() < deadline:
            with lock:
                if issued >= count:
                    return
                issued += 1
                to = next(source)
            status, body = c.call("POST", "/v1/otp", {"to": to})
            if status != 201:
                raise RuntimeError(f"POST /v1/otp to {to}: HTTP {status} {body}")
            with lock:
                ids.append(body["verification_id"])

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(worker) for _ in range(WORKERS)]
        for f in futures:
            try:
                f.result()
            except RuntimeError as e:
                # The first refusal is enough: the rest would be the same limit again.
                sys.exit(f"setup: {e}")
    return ids


def main():
    base, out = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 40
    probe(base)
    start = time.monotonic()
    ids = create(base, count, seconds)
    took = time.monotonic() - start
    with open(out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"SETUP created={len(ids)} seconds={took:.1f} rate={len(ids) / took:.0f}")


if __name__ == "__main__":
    main()
