#!/usr/bin/env python3
"""A strict double of Pantacor Hub's device API, for the Hub-client tests (issue 12).

Python 3.11 standard library only; certificates come from the `openssl` CLI.

    mockhub.py --make-ca DIR [--host NAME]
        writes DIR/ca.pem (what the device gets in PV_LIBTHTTP_CERTSDIR), DIR/server.{pem,key}
        (names: localhost, 127.0.0.1, NAME) and DIR/wrong.{pem,key} (only wrong.invalid);
        NAME (default 127.0.0.1) is the device's PH_CREDS_HOST, where signed URLs point
    mockhub.py serve --certs DIR [--host NAME] [--bind ADDR] [--port N] [--control-port N]
                     [--proxy-port N] [--log FILE] [--cert good|wrong] [--plain]
        serves the device API over HTTPS on ADDR:N (0: any free port), the control API over
        plain HTTP on 127.0.0.1 only and, with --proxy-port, an HTTP CONNECT proxy there that
        tunnels to the device port only (event "connect" in the log); once all listen it
        prints one JSON line {"port": N, "control": N, "proxy": N} on stdout. Every device-side request (and every failed TLS
        handshake) is a JSON line in FILE: t, method, path, status, in, out (body bytes really
        written), ms, range, device, fault, inflight (requests of its method and kind -- PUT
        progress, GET objects, GET local-s3, ... -- in flight with it, itself included; the
        most ever is "inflight-max" in /control/state); or an "event": "tls-error" (handshake failed) or
        "no-request" (closed without a request: how a TLS 1.3 client refusing the
        certificate shows, as it only checks it once the server has finished).

Device API (reference 8.5; Hub behaviour from pantacor/pantahub-base, phb:), strict where
the Hub is lax so that a device mistake shows: a request needs a well-formed `User-Agent`
(8.1; phb answers 403 only to an empty one on login); a body needs `Content-Type:
application/json` else 415 (phb's go-json-rest checker, which phb runs on /auth only); the
device's JSON bodies may carry only the keys the device sends (login, objects, progress,
log entries; device-meta is free-form) else 400 naming the key (Go ignores unknown keys).
Answers are encoded as Go does (compact, map keys sorted, `&` as \\u0026: why upstream
unescapes signed-geturl) and errors are phb's RError {"error","code"} (401: {"Error":
"Not Authorized"}, the JWT middleware's).

Control API (http://127.0.0.1:<control>, JSON in and out):
    GET    /control/state                 everything: devices, trails, steps, objects, logs, faults,
                                          inflight-max ({"GET local-s3": N, ...}: the most
                                          requests of a method and kind in flight at once)
    GET    /control/requests              the request log so far (as in FILE)
    POST   /control/autotokens            {"token", "owner"?, "user-meta"?}: a factory auto-token
    POST   /control/devices               {"id"?, "secret"?, "owner"?}: a device already on the Hub
    GET    /control/devices/<id>          one device, with secret, challenge, user- and device-meta
    POST   /control/devices/<id>/claim    {"challenge"}: as a user PUTs it; 403 if it is wrong
    PUT    /control/devices/<id>/user-meta  {..}: replaces the user-meta (as phb's PUT)
    DELETE /control/devices/<id>/user-meta/<key>
    POST   /control/objects               {"data_b64"}, {"data"}, {"path"} (a file here) or
                                          {"random": size} -> {"sha", "size"}
    POST   /control/devices/<id>/steps    {"rev", "state", "commit-msg"?, "objects"?: [b64..],
                                           "status"?: "NEW", "unchecked"?}: a step as `pvr
                                          post` makes it; its objects must be here unless
                                          unchecked
    GET    /control/devices/<id>/steps    steps with "progress" (as phb keeps it) and "history"
                                          (every progress body as received, in order)
    GET    /control/devices/<id>/trail    {"raw": POST /trails/ body byte-exact (latin-1 str)}
    POST   /control/devices/<id>/trail    {"state"}: the device synced before (migration)
    GET    /control/logs                  [{"device", "entry"}] as received
    POST   /control/faults                one fault (below); "count": N times (default 1), null
                                          for ever; answers the fault with its "id"
    DELETE /control/faults                clears every fault (and url-ttl, refuse)
    POST   /control/revoke-tokens         every session token stops working (401)
    POST   /control/cert                  {"cert": "good"|"wrong"}: for new connections
Faults ("kind"):
    unauthorized  {}                       401 to the next bearer-authenticated requests
    hang          {"path", "seconds"}      requests whose path starts with path wait, then answer
    status        {"path", "status", "method"?}  answer that status instead (5xx, 4xx)
    cut           {"sha"?, "after"}        an object download stops after `after` body bytes
    slow          {"sha"?, "rate"}         an object download goes at `rate` bytes/s (to kill
                                           a device in the middle of one; "count": null
                                           and several in flight show parallel transfers)
    wrong-bytes   {"sha"?}                 an object download serves other bytes, same size
    ignore-range  {"sha"?}                 an object download answers 200 whole, ignoring Range
    url-ttl       {"seconds"}              signed URLs made from now on expire after seconds
    refuse        {"seconds"}              stop listening (connections refused) for seconds,
                                           open connections are cut
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# 5.1: what a step's progress may say; SYNCING and CANCELLED are the Hub's own
STATUSES = {"NEW", "QUEUED", "DOWNLOADING", "INPROGRESS", "TESTING", "UPDATED", "DONE",
            "WONTGO", "ERROR", "SYNCING", "CANCELLED"}
USER_PRN = "prn:::accounts:/mockuser"
# 8.1: "Pantavisor/2 (Linux; <arch>) PV/<version> Date/<build date>"
USER_AGENT = re.compile(r"^Pantavisor/2 \(Linux; [^)]+\) PV/\S+ Date/\S")
SHA = re.compile(r"^[0-9a-f]{64}$")
# 8.7: ph_logger's caps for one POST /logs/
LOGS_MAX_ENTRIES, LOGS_MAX_BYTES = 200, 256 * 1024
# the keys the device sends (8.3, 8.5, 5.2, 8.7)
LOGIN_KEYS = {"username", "password"}
OBJECT_KEYS = {"objectname", "size", "sha256sum"}
PROGRESS_KEYS = {"status", "status-msg", "progress", "retries", "downloads", "logs"}
TOTAL_KEYS = {"object_name", "object_id", "total_size", "total_downloaded", "start_time",
              "current_time"}
ENTRY_KEYS = {"tsec", "tnano", "lvl", "src", "plat", "rev", "msg"}
DEVICE_KEYS = {"id", "prn", "nick", "owner", "secret", "time-created", "time-modified",
               "challenge", "public", "user-meta", "device-meta"}


class HubError(Exception):
    def __init__(self, status, msg, body=None):
        super().__init__(msg)
        self.status = status
        self.body = body if body is not None else {"error": msg, "code": status}


def gomap(v):
    """Go's encoding/json writes map keys sorted (structs keep their field order)."""
    if isinstance(v, dict):
        return {k: gomap(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [gomap(x) for x in v]
    return v


def gojson(v):
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


def only_keys(obj, allowed, what):
    if not isinstance(obj, dict):
        raise HubError(400, f"{what}: a JSON object is expected")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise HubError(400, f"{what}: unknown field '{unknown[0]}'")


def parse_json(body, what):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise HubError(400, f"{what}: bad JSON: {e}")


class Hub:
    """All state, under one lock; handlers run in threads."""

    def __init__(self, host, log_path):
        self.lock = threading.RLock()
        self.host = host
        self.port = 0
        self.scheme = "https"
        self.key = secrets.token_bytes(32)
        self.devices, self.autotokens, self.tokens = {}, {}, {}
        self.trails, self.steps, self.objects = {}, {}, {}
        self.logs, self.faults, self.requests = [], [], []
        self.inflight, self.inflight_max = {}, {}
        self.url_ttl = 3600
        self.refuse_until = 0.0
        self.cert = "good"
        self.fault_seq = 0
        self.log_file = open(log_path, "a", buffering=1) if log_path else None

    def record(self, rec):
        with self.lock:
            self.requests.append(rec)
            if self.log_file:
                self.log_file.write(json.dumps(rec) + "\n")

    # -- faults --
    def add_fault(self, f):
        kind = f.get("kind")
        need = {"unauthorized": (), "hang": ("path", "seconds"), "status": ("path", "status"),
                "cut": ("after",), "slow": ("rate",), "wrong-bytes": (), "ignore-range": (),
                "url-ttl": ("seconds",), "refuse": ("seconds",)}
        if kind not in need:
            raise HubError(400, f"fault: unknown kind {kind!r}")
        for k in need[kind]:
            if k not in f:
                raise HubError(400, f"fault {kind}: '{k}' missing")
        with self.lock:
            if kind == "url-ttl":
                self.url_ttl = float(f["seconds"])
                return f
            if kind == "refuse":
                self.refuse_until = time.time() + float(f["seconds"])
                return f
            self.fault_seq += 1
            f = dict(f, id=self.fault_seq, count=f.get("count", 1))
            self.faults.append(f)
            return f

    def take(self, kind, path="", method="", sha=""):
        """The first live fault of this kind matching the request, its count spent."""
        with self.lock:
            for f in self.faults:
                if f["kind"] != kind or f["count"] == 0:
                    continue
                if "path" in f and not path.startswith(f["path"]):
                    continue
                if f.get("method") and f["method"] != method:
                    continue
                if f.get("sha") and f["sha"] != sha:
                    continue
                if f["count"] is not None:
                    f["count"] -= 1
                return f
        return None

    # -- objects and signed URLs (phb objects/service.go MakeObjAccessible) --
    def signed_url(self, sha, method):
        exp = int(time.time() + self.url_ttl)
        sig = hmac.new(self.key, f"{method} {sha} {exp}".encode(), hashlib.sha256).hexdigest()
        # local-s3 style path (8.5: upstream PUTs to the path from /local-s3 on); '&' makes
        # the Go encoder's \u0026 appear, as a real S3 URL does
        return (f"{self.scheme}://{self.host}:{self.port}/local-s3/{sha}"
                f"?method={method}&expires={exp}&signature={sig}")

    def check_signed(self, sha, method, query):
        q = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            exp = int(q.get("expires", ""))
        except ValueError:
            raise HubError(403, "Invalid local-s3 request: no expiry")
        want = hmac.new(self.key, f"{method} {sha} {exp}".encode(), hashlib.sha256).hexdigest()
        if q.get("method") != method or not hmac.compare_digest(want, q.get("signature", "")):
            raise HubError(403, "Invalid local-s3 request: bad signature")
        if time.time() >= exp:
            raise HubError(403, "Invalid local-s3 request: token is expired")

    def object_json(self, sha, owner):
        o = self.objects[sha]
        # phb ObjectWithAccess: Object's fields, then the signed URLs; size is a string
        return {"id": sha, "storage-id": sha, "owner": owner, "objectname": o["objectname"],
                "sha256sum": sha, "size": str(o["size"]), "sizeint": o["size"],
                "mime-type": "", "time-created": rfc3339(o["time"]),
                "time-modified": rfc3339(o["time"]),
                "signed-puturl": self.signed_url(sha, "PUT"),
                "signed-geturl": self.signed_url(sha, "GET"),
                "now": str(int(time.time())), "expire-time": str(int(self.url_ttl))}

    def put_object(self, data, name=""):
        sha = hashlib.sha256(data).hexdigest()
        with self.lock:
            self.objects[sha] = {"data": data, "size": len(data), "objectname": name,
                                 "time": time.time()}
        return sha

    def add_step(self, dev_id, rev, state, msg, status):
        now = time.time()
        with self.lock:
            self.steps.setdefault(dev_id, {})[rev] = {
                "rev": rev, "state": state, "commit-msg": msg, "time": now,
                "progress-time": now, "progress": hub_progress({"status": status}),
                "history": []}  # every progress body the device PUT, as received
            return self.steps[dev_id][rev]

    def add_trail(self, dev_id, raw, state, owner):
        """phb post-trails.go: the trail, and its state as step 0, DONE."""
        with self.lock:
            self.trails[dev_id] = {"raw": raw, "state": state, "owner": owner,
                                   "time": time.time()}
            self.add_step(dev_id, 0, state, "Factory State (rev 0)", "DONE")

    # -- devices (phb devices/device.go Device) --
    def new_device(self, owner="", dev_id=None, secret=None, user_meta=None):
        dev_id = dev_id or secrets.token_hex(12)  # a Mongo ObjectId
        now = time.time()
        d = {"id": dev_id, "prn": f"prn:::devices:/{dev_id}",
             "nick": "mock_" + dev_id[-6:], "owner": owner,
             "secret": secret or secrets.token_urlsafe(15), "time-created": now,
             "time-modified": now, "challenge": "" if owner else "-".join(
                 secrets.choice(["able", "brave", "calm", "deft", "eager", "fair", "glad"])
                 for _ in range(3)),
             "user-meta": dict(user_meta or {}), "device-meta": {}}
        with self.lock:
            self.devices[dev_id] = d
        return d

    def device_json(self, d):
        out = {"id": d["id"], "prn": d["prn"], "nick": d["nick"], "owner": d["owner"],
               "secret": d["secret"], "time-created": rfc3339(d["time-created"]),
               "time-modified": rfc3339(d["time-modified"])}
        if d["challenge"]:
            out["challenge"] = d["challenge"]  # omitempty
        out.update({"public": False, "user-meta": gomap(d["user-meta"]),
                    "device-meta": gomap(d["device-meta"])})
        return out

    def step_json(self, dev, s):
        # phb trailmodels.Step, in its field order; progress as Go decoded the device's
        # (StepProgress has no 'retries' and names the logs 'log')
        return {"id": f"{dev['id']}-{s['rev']}", "owner": dev["owner"], "device": dev["prn"],
                "committer": dev["owner"], "trail-id": dev["id"], "rev": s["rev"],
                "commit-msg": s["commit-msg"], "state": gomap(s["state"]),
                "state-sha": hashlib.sha256(json.dumps(gomap(s["state"]), separators=(",", ":"))
                                            .encode()).hexdigest(),
                "progress": s["progress"], "step-time": rfc3339(s["time"]),
                "progress-time": rfc3339(s["progress-time"]), "meta": {}, "used_objects": [],
                "mark_public_processed": False, "garbage": False,
                "time-created": rfc3339(s["time"]), "time-modified": rfc3339(s["progress-time"])}


def hub_progress(p):
    """What phb's StepProgress keeps of a device's progress (and answers to the PUT)."""
    d = p.get("downloads") or {}
    t = d.get("total") or {}
    total = {k: t[k] for k in ("object_name", "object_id") if t.get(k)}
    total.update({k: int(t.get(k, 0)) for k in ("total_size", "start_time", "current_time",
                                                 "total_downloaded")})
    return {"progress": p.get("progress", 0), "downloads": {"total": total, "objects": None},
            "status-msg": p.get("status-msg", ""), "status": p.get("status", ""), "log": ""}


class DeviceHandler(BaseHTTPRequestHandler):
    """The device side: one instance per connection, requests in turn (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "mockhub"

    def log_message(self, *args):  # the JSON-lines log replaces http.server's stderr lines
        pass

    def handle(self):
        self.served, error = 0, None
        try:
            super().handle()
        except OSError as e:
            error = str(e)
        if not self.served:
            # with TLS 1.3 a client refusing the certificate just closes after the
            # handshake: the mock sees a connection without a request
            self.server.hub.record({"t": round(time.time(), 3), "event": "no-request",
                                    "peer": self.client_address[0], "error": error})

    def do_GET(self):
        self.served += 1
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status, body=b"", headers=(), limit=None, rate=0):
        """Answer with a body; with limit, write that many body bytes and cut; rate: B/s."""
        self.send_response(status)
        if body and not any(h[0] == "Content-Type" for h in headers):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if limit is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        out = body if limit is None else body[:limit]
        if self.command != "HEAD":
            # in pieces, so that "out" in the log counts what went before a cut or a kill
            piece = max(1, int(rate / 20)) if rate else 16384
            for i in range(0, len(out), piece):
                if rate:
                    time.sleep(piece / rate)
                self.wfile.write(out[i:i + piece])
                self.out += len(out[i:i + piece])
        if limit is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def dispatch(self):
        hub = self.server.hub
        t0 = time.time()
        self.out, self.device, self.fault, status = 0, None, None, 0
        url = urlsplit(self.path)
        body = b""
        # how many requests of this method and kind are in flight with this one (progress: at
        # most one, 8.5; object metadata and downloads: at most PH_UPDATER_TRANSFER_MAX_COUNT,
        # 5.4)
        kind = "progress" if url.path.endswith("/progress") else url.path.split("/")[1]
        kind = f"{self.command} {kind}"
        with hub.lock:
            hub.inflight[kind] = inflight = hub.inflight.get(kind, 0) + 1
            hub.inflight_max[kind] = max(inflight, hub.inflight_max.get(kind, 0))
        try:
            body = self.read_body()
            if f := hub.take("hang", url.path, self.command):
                self.fault = f"hang {f['seconds']}s"
                time.sleep(float(f["seconds"]))
            if f := hub.take("status", url.path, self.command):
                self.fault = f"status {f['status']}"
                raise HubError(int(f["status"]), "injected fault")
            status = self.route(url, body)
        except HubError as e:
            status = e.status
            self.send(status, gojson(e.body))
        except (OSError, ssl.SSLError):
            status = status or 499  # the device went away (or a cut): logged, not raised
            self.close_connection = True
        except Exception as e:  # a mock bug must show, not kill the connection silently
            status = 500
            self.send(500, gojson({"error": f"mockhub bug: {type(e).__name__}: {e}",
                                   "code": 500}))
        finally:
            with hub.lock:
                hub.inflight[kind] -= 1
        hub.record({"t": round(t0, 3), "method": self.command, "path": self.path,
                    "status": status, "in": len(body), "out": self.out,
                    "ms": round((time.time() - t0) * 1000, 1),
                    "range": self.headers.get("Range"), "device": self.device,
                    "fault": self.fault, "inflight": inflight})

    def route(self, url, body):
        hub, path, m = self.server.hub, url.path, self.command
        if path.startswith("/local-s3/"):
            return self.local_s3(path[len("/local-s3/"):], url.query, body)
        if not USER_AGENT.match(self.headers.get("User-Agent", "")):
            # phb auth/login.go answers an empty one so; 8.1 gives the shape
            raise HubError(403, "No Access (DOS) - no UserAgent")
        if len(self.headers.get_all("Content-Type") or []) > 1:
            raise HubError(400, "more than one Content-Type")
        if body:
            ctype = self.headers.get("Content-Type", "")
            media, _, params = ctype.partition(";")
            charset = params.strip().lower()
            if media.strip().lower() != "application/json" or charset not in ("",
                                                                              "charset=utf-8"):
                # go-json-rest ContentTypeCheckerMiddleware's answer
                raise HubError(415, "bad content type", {
                    "Error": "Bad Content-Type or charset, expected 'application/json'"})
        if m == "POST" and path == "/devices/":
            return self.register(body)
        if m == "POST" and path == "/auth/login":
            return self.login(body)
        tok = self.authenticate()
        dev = hub.devices[tok["device"]]
        self.device = dev["id"]
        routes = [
            ("GET", r"/devices/([0-9a-f]+)", self.get_device),
            ("GET", r"/devices/([0-9a-f]+)/user-meta", self.get_user_meta),
            ("PUT", r"/devices/([0-9a-f]+)/device-meta", self.put_device_meta),
            ("GET", r"/trails/", self.get_trails),
            ("POST", r"/trails/", self.post_trail),
            ("GET", r"/trails/([0-9a-f]+)/steps", self.get_steps),
            ("PUT", r"/trails/([0-9a-f]+)/steps/(\d+)/progress", self.put_progress),
            ("POST", r"/objects/", self.post_object),
            ("GET", r"/objects/([^/]+)", self.get_object),
            ("POST", r"/logs/", self.post_logs),
        ]
        for method, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if match and method == m:
                return fn(tok, dev, url, body, *match.groups())
        raise HubError(404, f"no such endpoint: {m} {path}")

    def authenticate(self):
        hub = self.server.hub
        auth = self.headers.get("Authorization", "")
        with hub.lock:
            tok = hub.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        unauthorized = {"Error": "Not Authorized"}  # the JWT middleware's 401
        if tok is None:
            raise HubError(401, "no or unknown bearer token", unauthorized)
        if f := hub.take("unauthorized"):
            self.fault = "unauthorized"
            raise HubError(401, "injected", unauthorized)
        return tok

    def ok(self, value, status=200, headers=()):
        self.send(status, gojson(value), headers)
        return status

    # 8.2 (phb devices/post-device.go)
    def register(self, body):
        hub = self.server.hub
        if body.strip():
            only_keys(parse_json(body, "POST /devices/"), DEVICE_KEYS, "POST /devices/")
        owner, meta = "", {}
        autotok = self.headers.get("Pantahub-Devices-Auto-Token-V1")
        if autotok is not None:
            with hub.lock:
                info = hub.autotokens.get(autotok)
            if info is None:
                raise HubError(400, "Error using AutoAuthToken: unknown token")
            owner, meta = info["owner"], info["user-meta"]
        d = hub.new_device(owner=owner, user_meta=meta)
        self.device = d["id"]
        return self.ok(hub.device_json(d))

    # 8.3 (phb auth/login.go; a wrong secret is the JWT middleware's 401)
    def login(self, body):
        hub = self.server.hub
        req = parse_json(body, "POST /auth/login")
        only_keys(req, LOGIN_KEYS, "POST /auth/login")
        if not all(isinstance(req.get(k), str) for k in LOGIN_KEYS):
            raise HubError(400, "Failed to decode token Request")
        with hub.lock:
            d = next((d for d in hub.devices.values() if d["prn"] == req.get("username")), None)
            if d is None or not hmac.compare_digest(str(req.get("password")), d["secret"]):
                raise HubError(401, "bad credentials", {"Error": "Not Authorized"})
            token = secrets.token_urlsafe(24)
            # the token's claims hold the owner as at login, as phb's JWT does: a device
            # claimed since must log in again before it may post trails, objects or logs
            hub.tokens[token] = {"device": d["id"], "owner": d["owner"]}
        self.device = d["id"]
        return self.ok({"token": token})

    def own(self, dev, dev_id):
        if dev_id != dev["id"]:
            raise HubError(403, "No Access")

    def need_owner(self, tok, msg):
        if not tok["owner"]:
            raise HubError(403, msg)

    def get_device(self, tok, dev, url, body, dev_id):
        self.own(dev, dev_id)
        return self.ok(self.server.hub.device_json(dev))

    def get_user_meta(self, tok, dev, url, body, dev_id):
        self.own(dev, dev_id)
        return self.ok(gomap(dev["user-meta"]))

    def put_device_meta(self, tok, dev, url, body, dev_id):
        self.own(dev, dev_id)
        meta = parse_json(body, "PUT device-meta")
        if not isinstance(meta, dict):
            raise HubError(400, "PUT device-meta: a JSON object is expected")
        with self.server.hub.lock:
            dev["device-meta"] = meta  # phb $set: the whole object replaces the last one
            dev["time-modified"] = time.time()
        return self.ok(gomap(meta))

    def get_trails(self, tok, dev, url, body):
        with self.server.hub.lock:
            t = self.server.hub.trails.get(dev["id"])
        if t is None:
            return self.ok([])
        return self.ok([{"id": dev["id"], "owner": t["owner"], "device": dev["prn"],
                         "last-insync": rfc3339(0), "last-touched": rfc3339(t["time"]),
                         "factory-state": gomap(t["state"]), "used_objects": []}])

    # first sync (phb trails/post-trails.go): the state becomes step 0, DONE
    def post_trail(self, tok, dev, url, body):
        hub = self.server.hub
        self.need_owner(tok, "Device needs an owner")
        state = parse_json(body, "POST /trails/")
        if not isinstance(state, dict):
            raise HubError(400, "POST /trails/: the state must be a JSON object")
        missing = state_objects(hub, state)
        if missing:  # upstream uploads every object first (updater.c trail_first_boot)
            raise HubError(500, f"Error processing trail objects in factory-state: object "
                           f"{missing[0]} not on the Hub")
        with hub.lock:
            if dev["id"] in hub.trails:
                raise HubError(500, "Error inserting trail into database: duplicate key")
            hub.add_trail(dev["id"], body, state, tok["owner"])
        return self.get_trails(tok, dev, url, b"")

    # 5.4 poll (phb trails/get-trail-steps.go): rev order, the status filter applied
    def get_steps(self, tok, dev, url, body, trail_id):
        q = parse_qs(url.query)
        raw = q.get("progress.status", [""])[0]
        want = lambda s: s == "NEW"  # noqa: E731 (a device without a filter gets NEW, one)
        limit = 1
        if raw:
            limit = None
            try:
                flt = json.loads(raw)
            except ValueError:
                flt = raw
            want = status_filter(flt)
        with self.server.hub.lock:
            steps = self.server.hub.steps.get(dev["id"], {}) if trail_id == dev["id"] else {}
            out = [self.server.hub.step_json(dev, s) for _, s in sorted(steps.items())
                   if want(s["progress"]["status"])]
        return self.ok(out[:limit])

    # 5.2 (phb trails/put-trails-rev-progress.go)
    def put_progress(self, tok, dev, url, body, trail_id, rev):
        p = parse_json(body, "PUT progress")
        only_keys(p, PROGRESS_KEYS, "PUT progress")
        if p.get("status") not in STATUSES - {"SYNCING", "CANCELLED"}:
            raise HubError(400, f"PUT progress: status {p.get('status')!r} is not a device's")
        for k, typ in (("status-msg", str), ("progress", int), ("retries", int), ("logs", str)):
            if k in p and type(p[k]) is not typ:
                raise HubError(400, f"PUT progress: '{k}' must be a {typ.__name__}")
        if "downloads" in p:
            only_keys(p["downloads"], {"total", "objects"}, "PUT progress downloads")
            total = p["downloads"].get("total", {})
            only_keys(total, TOTAL_KEYS, "PUT progress downloads.total")
            for k in TOTAL_KEYS - {"object_name", "object_id"}:
                if type(total.get(k, 0)) is not int:
                    raise HubError(400, f"PUT progress: downloads.total.{k} must be an int")
        hub = self.server.hub
        with hub.lock:
            s = hub.steps.get(dev["id"], {}).get(int(rev)) if trail_id == dev["id"] else None
            if s is None:
                raise HubError(400, "Error updating trail: not found")
            s["progress"] = hub_progress(p)
            s["progress-time"] = time.time()
            s["history"].append(body.decode("utf-8"))
        return self.ok(s["progress"])

    # first sync objects (updater.c trail_put_object; phb objects/create-object.go)
    def post_object(self, tok, dev, url, body):
        hub = self.server.hub
        self.need_owner(tok, "You need to be logged in as a USER or DEVICE")
        o = parse_json(body, "POST /objects/")
        only_keys(o, OBJECT_KEYS, "POST /objects/")
        sha, size = o.get("sha256sum", ""), o.get("size")
        if not isinstance(sha, str) or not SHA.match(sha):
            raise HubError(400, "Object sha must be a valid sha256")
        if not isinstance(size, str) or not size.isdigit():
            raise HubError(400, "POST /objects/: size must be a string of digits (8.5)")
        with hub.lock:
            have = hub.objects.get(sha)
            if have and have["data"] is not None:
                return self.ok(hub.object_json(sha, tok["owner"]), 409)
            hub.objects[sha] = {"data": None, "size": int(size),
                                "objectname": o.get("objectname", ""), "time": time.time()}
            return self.ok(hub.object_json(sha, tok["owner"]))

    def get_object(self, tok, dev, url, body, sha):
        hub = self.server.hub
        self.need_owner(tok, "You need to be logged in as USER or DEVICE with owner")
        if not SHA.match(sha):
            raise HubError(400, "Get New Object :id must be a valid sha256")
        with hub.lock:
            if sha not in hub.objects or hub.objects[sha]["data"] is None:
                raise HubError(403, "No Access")
            return self.ok(hub.object_json(sha, tok["owner"]))

    # 8.7 (phb logs/post-logs.go)
    def post_logs(self, tok, dev, url, body):
        self.need_owner(tok, "You need to be logged in as device with owner")
        entries = parse_json(body, "POST /logs/")
        if not isinstance(entries, list):
            raise HubError(400, "POST /logs/: a JSON array of entries is expected")
        if len(entries) > LOGS_MAX_ENTRIES or len(body) > LOGS_MAX_BYTES:
            raise HubError(413, f"POST /logs/: {len(entries)} entries, {len(body)} B: over "
                           f"{LOGS_MAX_ENTRIES} entries or {LOGS_MAX_BYTES} B (8.7)")
        for i, e in enumerate(entries):
            only_keys(e, ENTRY_KEYS, f"POST /logs/ entry {i}")
            for k in sorted(ENTRY_KEYS):  # phb's Entry: tsec, tnano int64, the rest strings
                typ = int if k in ("tsec", "tnano") else str
                if type(e.get(k)) is not typ:
                    raise HubError(400, f"POST /logs/ entry {i}: '{k}' missing or not a "
                                   f"{typ.__name__}")
        with self.server.hub.lock:
            self.server.hub.logs.extend({"device": dev["id"], "entry": e} for e in entries)
        return self.ok({"status": "ok"})

    # the signed URLs' target (phb base/s3_file_server.go; Range as S3 answers it)
    def local_s3(self, sha, query, body):
        hub = self.server.hub
        hub.check_signed(sha, self.command, query)
        if self.command == "PUT":
            with hub.lock:
                o = hub.objects.get(sha)
                if o is None:
                    raise HubError(403, "Invalid local-s3 request: unknown object")
                if hashlib.sha256(body).hexdigest() != sha or len(body) != o["size"]:
                    raise HubError(400, f"PUT local-s3: {len(body)} B with sha256 "
                                   f"{hashlib.sha256(body).hexdigest()}, not the object's")
                o["data"] = body
            self.send(200)
            return 200
        with hub.lock:
            o = hub.objects.get(sha)
            data = o["data"] if o else None
        if data is None:
            raise HubError(404, "NoSuchKey")
        size = len(data)
        if f := hub.take("wrong-bytes", sha=sha):
            self.fault = "wrong-bytes"
            data = data[:-1] + bytes([data[-1] ^ 1]) if data else data  # the last bit
        headers, status, start = [("Content-Type", "application/octet-stream"),
                                  ("Accept-Ranges", "bytes")], 200, 0
        rng = self.headers.get("Range")
        if rng and (f := hub.take("ignore-range", sha=sha)):
            self.fault, rng = "ignore-range", None
        if rng:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not match:
                raise HubError(416, f"Range {rng!r}: only bytes=N- and bytes=N-M")
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            if start >= size or end < start:
                self.send(416, b"", [("Content-Range", f"bytes */{size}")])
                return 416
            status, data = 206, data[start:end + 1]
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        limit, rate = None, 0
        if f := hub.take("cut", sha=sha):
            limit = int(f["after"])
            self.fault = f"cut after {limit}"
        if f := hub.take("slow", sha=sha):
            rate = float(f["rate"])
        self.send(status, data, headers, limit, rate)
        return status


def state_objects(hub, state):
    """phb trails-api.go GetStateObjects: every key but #spec and *.json names an object the
    Hub has; the missing ones, or an error."""
    if not state:
        return []
    if state.get("#spec") not in ("pantavisor-multi-platform@1", "pantavisor-service-embed@1",
                                  "pantavisor-service-system@1"):
        raise HubError(500, "state_object: Invalid state: #spec missing or unknown")
    shas = [v for k, v in state.items() if k != "#spec" and not k.endswith(".json")]
    bad = [v for v in shas if not isinstance(v, str)]
    if bad:
        raise HubError(500, f"state_object: Object is not a string: {json.dumps(bad[0])}")
    with hub.lock:
        return [v for v in shas if v not in hub.objects or hub.objects[v]["data"] is None]


def status_filter(flt):
    """progress.status as phb hands it to MongoDB: a plain value or one operator."""
    if isinstance(flt, str):
        return lambda s: s == flt
    if isinstance(flt, dict) and len(flt) == 1:
        (op, arg), = flt.items()
        if op in ("$in", "$nin") and isinstance(arg, list):
            return (lambda s: s in arg) if op == "$in" else (lambda s: s not in arg)
        if op in ("$eq", "$ne") and isinstance(arg, str):
            return (lambda s: s == arg) if op == "$eq" else (lambda s: s != arg)
    raise HubError(400, f"progress.status: unsupported filter {json.dumps(flt)}")


class DeviceServer:
    """The device port: its own accept loop, so that it can stop listening (refuse)."""

    def __init__(self, hub, bind, port, certs, plain):
        self.hub, self.bind_addr, self.conns = hub, bind, set()
        self.contexts = {}
        if not plain:
            for name in ("good", "wrong"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                stem = "server" if name == "good" else "wrong"
                ctx.load_cert_chain(os.path.join(certs, stem + ".pem"),
                                    os.path.join(certs, stem + ".key"))
                self.contexts[name] = ctx
        hub.scheme = "http" if plain else "https"
        self.port = port
        self.lsock = self.listen()
        hub.port = self.port

    def listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.bind_addr, self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        return s

    def run(self):
        while True:
            wait = self.hub.refuse_until - time.time()
            if wait > 0:
                if self.lsock:
                    self.lsock.close()
                    self.lsock = None
                    for c in list(self.conns):
                        try:
                            c.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                time.sleep(min(wait, 0.05))
                continue
            try:
                if self.lsock is None:
                    self.lsock = self.listen()
                if not select.select([self.lsock], [], [], 0.05)[0]:
                    continue
                conn, peer = self.lsock.accept()
            except OSError as e:  # a reset before accept, the port taken meanwhile: again
                print(f"mockhub: device port: {e}", file=sys.stderr, flush=True)
                time.sleep(0.05)
                continue
            threading.Thread(target=self.serve, args=(conn, peer), daemon=True).start()

    def serve(self, conn, peer):
        conn.settimeout(120)
        if self.contexts:
            try:  # the handshake in this thread: a silent client never stalls accepting
                conn = self.contexts[self.hub.cert].wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.hub.record({"t": round(time.time(), 3), "event": "tls-error",
                                 "peer": peer[0], "error": str(e)})
                conn.close()
                return
        self.conns.add(conn)
        try:
            DeviceHandler(conn, peer, self)
        except OSError:
            pass
        finally:
            self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        hub = self.server.hub
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        try:
            arg = json.loads(body) if body else {}
            status, out = 200, self.route(hub, self.command, urlsplit(self.path).path, arg)
        except HubError as e:
            status, out = e.status, e.body
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
            status, out = 400, {"error": f"control: {type(e).__name__}: {e}"}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_DELETE = do_GET

    def route(self, hub, m, path, arg):
        p = path.rstrip("/").split("/")[2:]  # after /control
        dev = None
        if len(p) >= 2 and p[0] == "devices":
            dev = hub.devices.get(p[1])
            if dev is None:
                raise HubError(404, f"control: no device {p[1]}")
        with hub.lock:
            if m == "GET" and p == ["state"]:
                return {"devices": {k: dict(hub.device_json(d), secret=d["secret"],
                                            challenge=d["challenge"])
                                    for k, d in hub.devices.items()},
                        "trails": {k: t["raw"].decode("latin-1") for k, t in hub.trails.items()},
                        "steps": {k: self.steps(v) for k, v in hub.steps.items()},
                        "objects": {k: {"size": o["size"], "stored": o["data"] is not None}
                                    for k, o in hub.objects.items()},
                        "logs": hub.logs, "faults": hub.faults, "url-ttl": hub.url_ttl,
                        "inflight-max": hub.inflight_max}
            if m == "GET" and p == ["requests"]:
                return hub.requests
            if m == "POST" and p == ["autotokens"]:
                hub.autotokens[arg["token"]] = {"owner": arg.get("owner", USER_PRN),
                                                "user-meta": arg.get("user-meta", {})}
                return {"token": arg["token"]}
            if m == "POST" and p == ["devices"]:
                d = hub.new_device(arg.get("owner", ""), arg.get("id"), arg.get("secret"))
                return hub.device_json(d)
            if m == "GET" and dev and len(p) == 2:
                return dict(hub.device_json(dev), challenge=dev["challenge"])
            if m == "POST" and dev and p[2:] == ["claim"]:
                # phb put-device.go: the challenge must match, the user becomes the owner
                if not dev["challenge"] or arg.get("challenge") != dev["challenge"]:
                    raise HubError(403, "No Access to Device")
                dev["owner"], dev["challenge"] = arg.get("owner", USER_PRN), ""
                return hub.device_json(dev)
            if m == "PUT" and dev and p[2:] == ["user-meta"]:
                dev["user-meta"] = dict(arg)
                return dev["user-meta"]
            if m == "DELETE" and dev and len(p) == 4 and p[2] == "user-meta":
                dev["user-meta"].pop(p[3], None)
                return dev["user-meta"]
            if m == "POST" and dev and p[2:] == ["steps"]:
                for b in arg.get("objects", []):
                    hub.put_object(base64.b64decode(b))
                missing = state_objects(hub, arg["state"])
                if missing and not arg.get("unchecked"):
                    raise HubError(400, f"control: the state names object {missing[0]}, "
                                   "not on the Hub (\"unchecked\": true to post it anyway)")
                step = hub.add_step(dev["id"], int(arg["rev"]), arg["state"],
                                    arg.get("commit-msg", ""), arg.get("status", "NEW"))
                return hub.step_json(dev, step)
            if m == "GET" and dev and p[2:] == ["steps"]:
                return self.steps(hub.steps.get(dev["id"], {}))
            if m == "POST" and dev and p[2:] == ["trail"]:
                # a device that synced before (as under upstream: migration)
                hub.add_trail(dev["id"], json.dumps(arg["state"]).encode(), arg["state"],
                              dev["owner"])
                return {}
            if m == "GET" and dev and p[2:] == ["trail"]:
                t = hub.trails.get(dev["id"])
                if t is None:
                    raise HubError(404, "control: no trail")
                return {"raw": t["raw"].decode("latin-1")}
            if m == "POST" and p == ["objects"]:
                if "path" in arg:
                    with open(arg["path"], "rb") as f:
                        data = f.read()
                elif "random" in arg:
                    data = os.urandom(int(arg["random"]))
                else:
                    data = (base64.b64decode(arg["data_b64"]) if "data_b64" in arg
                            else arg["data"].encode())
                return {"sha": hub.put_object(data), "size": len(data)}
            if m == "GET" and p == ["logs"]:
                return hub.logs
            if m == "POST" and p == ["faults"]:
                return hub.add_fault(arg)
            if m == "DELETE" and p == ["faults"]:
                hub.faults.clear()
                hub.url_ttl, hub.refuse_until = 3600, 0.0
                return {}
            if m == "POST" and p == ["revoke-tokens"]:
                hub.tokens.clear()
                return {}
            if m == "POST" and p == ["cert"]:
                if arg.get("cert") not in ("good", "wrong"):
                    raise HubError(400, "control: cert is good or wrong")
                hub.cert = arg["cert"]
                return {"cert": hub.cert}
        raise HubError(404, f"control: no such endpoint {m} {path}")

    @staticmethod
    def steps(steps):
        return [{"rev": s["rev"], "progress": s["progress"], "history": s["history"]}
                for _, s in sorted(steps.items())]


class ProxyHandler(BaseHTTPRequestHandler):
    """An HTTP CONNECT proxy to the device port only (PH_CREDS_PROXY_HOST/PORT, 8.1)."""

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        hub = self.server.hub
        host, _, port = self.path.rpartition(":")
        ok = host in ("localhost", "127.0.0.1", hub.host) and port == str(hub.port)
        rec = {"t": round(time.time(), 3), "event": "connect", "target": self.path}
        try:
            up = socket.create_connection((self.server.dev_addr, hub.port), 10) if ok else None
        except OSError:
            up = None
        hub.record(dict(rec, status=200 if up else 403 if not ok else 502))
        if up is None:
            self.send_error(403 if not ok else 502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        socks = [self.connection, up]
        try:
            while True:
                for r in select.select(socks, [], [], 120)[0]:
                    data = r.recv(65536)
                    if not data:
                        return
                    (up if r is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            up.close()

    def do_GET(self):
        self.send_error(405, "CONNECT only")

    do_POST = do_PUT = do_GET


def make_ca(out, host):
    os.makedirs(out, exist_ok=True)

    def run(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=out)
        if r.returncode:
            sys.exit(f"mockhub: openssl {args[0]} failed: {r.stderr.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=pantavisor mockhub test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    kind = "IP" if re.fullmatch(r"[\d.]+|[\da-fA-F:]*:[\da-fA-F:.]*", host) else "DNS"
    names = ",".join(dict.fromkeys(["DNS:localhost", "IP:127.0.0.1", f"{kind}:{host}"]))
    for stem, names in (("server", names),
                        ("wrong", "DNS:wrong.invalid")):
        with open(os.path.join(out, stem + ".ext"), "w") as f:
            f.write(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        run("req", *ec, "-keyout", stem + ".key", "-out", stem + ".csr",
            "-subj", f"/CN={names.split(',')[0][4:]}")
        run("x509", "-req", "-in", stem + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(secrets.token_bytes(8), "big")),
            "-days", "30", "-extfile", stem + ".ext", "-out", stem + ".pem")
        os.remove(os.path.join(out, stem + ".csr"))
        os.remove(os.path.join(out, stem + ".ext"))


def main():
    ap = argparse.ArgumentParser(description="mock Pantacor Hub (device API) for tests")
    ap.add_argument("--make-ca", metavar="DIR")
    ap.add_argument("cmd", nargs="?", choices=["serve"])
    ap.add_argument("--certs", metavar="DIR")
    ap.add_argument("--host", default="127.0.0.1",
                    help="the Hub's name (PH_CREDS_HOST) in certificates and signed URLs")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--proxy-port", type=int, help="also an HTTP CONNECT proxy (0: any)")
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--cert", choices=["good", "wrong"], default="good")
    ap.add_argument("--plain", action="store_true", help="plain HTTP on the device port")
    a = ap.parse_args()
    if a.make_ca:
        make_ca(a.make_ca, a.host)
        return
    if a.cmd != "serve" or (not a.certs and not a.plain):
        ap.error("serve --certs DIR (or --plain), or --make-ca DIR")
    hub = Hub(a.host, a.log)
    hub.cert = a.cert
    dev = DeviceServer(hub, a.bind, a.port, a.certs, a.plain)
    ports = {"port": dev.port}
    for name, handler, port in (("control", ControlHandler, a.control_port),
                                ("proxy", ProxyHandler, a.proxy_port)):
        if port is None:
            continue
        srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
        srv.daemon_threads, srv.hub, srv.dev_addr = True, hub, a.bind
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        ports[name] = srv.server_address[1]
    print(json.dumps(ports), flush=True)
    dev.run()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
