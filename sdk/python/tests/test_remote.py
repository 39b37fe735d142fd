"""External instances (plugvisor.remote) end to end: the plugin runs as a real
subprocess with PLUGVISOR_CONNECT and connects to a fake daemon made of the
standard ssl module — a real TLS server requiring a client certificate, with
certificates made by the openssl CLI here — which speaks SP PAIR v0 TCP
framing written out below (not the SDK's own sp.py), so the wire is checked
independently of the code under test."""

import json
import os
import queue
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from plugvisor import frames as fr
from plugvisor import remote

TIMEOUT = 10.0
SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SP_HEADER = b"\x00SP\x00\x00\x10\x00\x00"  # PAIR v0
OPENSSL = shutil.which("openssl")
NO_OPENSSL = ("the openssl command is not installed (Debian package openssl); "
              "these tests make their TLS certificates with it")

PLUGIN = '''
import plugvisor

def double(ctx, x):
    return x * 2

def echo(ctx, s):
    return s

class Ticks:
    def open(self, ctx, emit):
        n = 0
        while not ctx.done():
            n += 1
            emit(n)
            ctx.wait(0.01)

plugvisor.serve(name="geo", version="1.2.0", functions={"double": double, "echo": echo}, sources={"ticks": Ticks})
'''


def _openssl(*args, cwd):
    out = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), out.stderr))


def make_pki(d):
    """Two CAs (ca, other); a daemon certificate from each for the name
    plugvisor.test; a client certificate from ca with CN geo."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "other"):
        _openssl("req", "-x509", *ec, "-keyout", ca + "-key.pem", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=test " + ca, cwd=d)

    def leaf(name, ca, cn, ext):
        _openssl("req", *ec, "-keyout", name + "-key.pem", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + "-key.pem",
                 "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)

    server = "subjectAltName=DNS:plugvisor.test\nextendedKeyUsage=serverAuth\n"
    leaf("server", "ca", "plugvisor daemon", server)
    leaf("other-server", "other", "plugvisor daemon", server)
    leaf("client", "ca", "geo", "subjectAltName=DNS:geo\nextendedKeyUsage=clientAuth\n")
    return {k: os.path.join(d, k + ".pem") for k in ("ca", "other", "server", "other-server", "client")}


class Conn:
    """One accepted connection of the fake daemon, used from one thread."""

    def __init__(self, s: ssl.SSLSocket):
        self.s = s
        self.alpn = s.selected_alpn_protocol()
        self.cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
        self.buf = []

    def sp_handshake(self):
        self.s.sendall(SP_HEADER)
        got = self._read(8)
        if got != SP_HEADER:
            raise AssertionError("SP header %s, want %s" % (got.hex(), SP_HEADER.hex()))

    def send(self, ftype, fid=0, payload=b""):
        body = fr.encode_frame(ftype, fid, payload)
        self.s.sendall(struct.pack(">Q", len(body)) + body)  # TCP framing: no 0x01 byte

    def next(self):
        while not self.buf:
            (n,) = struct.unpack(">Q", self._read(8))
            if n > fr.DEFAULT_MAX_FRAME:
                raise AssertionError("SP message of %d bytes announced: not TCP framing" % n)
            self.buf = fr.parse_message(self._read(n))
        return self.buf.pop(0)

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise EOFError("the plugin closed the connection")
            b += chunk
        return b

    def drop(self):
        """Closes abruptly: a TCP reset, no TLS close_notify, no shutdown frame."""
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()


class Daemon:
    """The daemon's listener: each accept can use another certificate and
    ALPN list, as the tests need."""

    def __init__(self, test, pki):
        self.pki = pki
        self.ln = socket.socket()
        self.ln.bind(("127.0.0.1", 0))
        self.ln.listen(8)
        self.conns = []
        test.addCleanup(self.close)
        self.address = "tls+tcp://127.0.0.1:%d" % self.ln.getsockname()[1]

    def close(self):
        self.ln.close()
        for c in self.conns:
            c.s.close()

    def accept_raw(self):
        self.ln.settimeout(TIMEOUT)
        raw, _ = self.ln.accept()
        raw.settimeout(TIMEOUT)
        return raw

    def accept(self, protocols, cert="server", client_ca="ca"):
        """The next connection after a TLS handshake that required a client
        certificate from client_ca; ssl.SSLError when the handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki[cert], self.pki[cert].replace(".pem", "-key.pem"))
        ctx.load_verify_locations(self.pki[client_ca])
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(protocols)
        raw = self.accept_raw()
        try:
            c = Conn(ctx.wrap_socket(raw, server_side=True))
        except BaseException:
            raw.close()
            raise
        self.conns.append(c)
        return c

    def session(self, test, proc, generation, heartbeat_ms=0, features=None):
        """Accepts a control connection and runs the handshake to welcome."""
        c = self.accept(["plugvisor.1"])
        test.assertEqual(c.alpn, "plugvisor.1")
        test.assertEqual(c.cn, "geo")
        c.sp_handshake()
        hello = c.next()
        test.assertEqual(hello.type, fr.HELLO)
        h = json.loads(hello.payload)
        test.assertEqual((h["protocol"], h["token"], h["pid"]), (1, "", proc.pid))
        test.assertEqual((h["manifest"]["name"], h["manifest"]["version"]), ("geo", "1.2.0"))
        welcome = {"plugin": "geo", "generation": generation, "config": {}, "heartbeat_ms": heartbeat_ms}
        if features is not None:
            welcome["features"] = features
        c.send(fr.WELCOME, 0, json.dumps(welcome).encode())
        return c


class Plugin:
    """The plugin as a real process; stderr lines are collected as they come."""

    def __init__(self, test, env):
        self.dir = tempfile.mkdtemp(prefix="pvremote")
        test.addCleanup(shutil.rmtree, self.dir, True)
        main = os.path.join(self.dir, "main.py")
        with open(main, "w") as f:
            f.write(PLUGIN)
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SDK}
        full.update(env)
        # Its own process group, as PID 1 of a container is: a plugin that
        # took a lost daemon for a dead parent would kill the group, itself too.
        self.p = subprocess.Popen([sys.executable, main], env=full, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.pid = self.p.pid
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        test.addCleanup(self.reap)

    def _read(self):
        for line in self.p.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, *parts):
        """The next stderr line containing every part (within TIMEOUT)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError("no stderr line with %r within %.0fs; saw %r" % (parts, TIMEOUT, self.seen))
            self.seen.append(line)
            if all(p in line for p in parts):
                return line

    def wait(self):
        try:
            code = self.p.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the plugin did not exit within %.0fs; stderr %r" % (TIMEOUT, self.seen))
        self.reader.join(TIMEOUT)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def reap(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(TIMEOUT)
        self.p.stderr.close()


def connect_env(pki, address, **over):
    env = {remote.CONNECT: address, remote.CERT: pki["client"],
           remote.KEY: pki["client"].replace(".pem", "-key.pem"), remote.CA: pki["ca"],
           remote.SERVER_NAME: "plugvisor.test"}
    env.update(over)
    return env


@unittest.skipIf(OPENSSL is None, NO_OPENSSL)
class RemoteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pvpki")
        cls.pki = make_pki(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def open_functions(self, d, ctl, rid, kind="functions", symbol=""):
        cid = secrets.token_hex(16)
        ctl.send(fr.OPEN, rid, json.dumps({"instance": kind + "/" + symbol, "kind": kind, "symbol": symbol,
                                           "address": "mux://" + cid}).encode())
        # Listed after plugvisor.1, which the server prefers: the ALPN agreed
        # proves the channel offered only plugvisor.1/ID.
        data = self.accept_channel(d, cid)
        f = ctl.next()
        self.assertEqual((f.type, f.id), (fr.OK, rid), f.payload)
        return data

    def accept_channel(self, d, cid):
        data = d.accept(["plugvisor.1", "plugvisor.1/" + cid])
        self.assertEqual(data.alpn, "plugvisor.1/" + cid)
        self.assertEqual(data.cn, "geo")
        data.sp_handshake()
        return data

    def test_serves_reconnects_after_a_drop_and_exits_0_on_shutdown(self):
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        ctl = d.session(self, p, 1)
        data = self.open_functions(d, ctl, 1)
        data.send(fr.CALL, 7, fr.call_payload("double", b"21"))
        f = data.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.RESULT, 7, b"42"))

        # Full duplex over one TLS connection: the plugin reads calls while
        # its writer sends results (OpenSSL allows neither at once on one
        # SSL object; plugvisor.tls serialises them).
        big = {i: json.dumps("%d:" % i + "x" * 20000).encode() for i in range(100, 200)}
        for i, inp in big.items():
            data.send(fr.CALL, i, fr.call_payload("echo", inp))
        got = {}
        while len(got) < len(big):
            f = data.next()
            self.assertEqual(f.type, fr.RESULT, f.payload[:200])
            got[f.id] = f.payload
        self.assertEqual(got, big)

        # A second channel at once: a source streams while calls go on.
        src = self.open_functions(d, ctl, 2, "source", "ticks")
        data.send(fr.CALL, 9, fr.call_payload("double", b"5"))
        self.assertEqual([src.next()[:3] for _ in range(3)],
                         [(fr.DATA, i, str(i).encode()) for i in (1, 2, 3)])
        f = data.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.RESULT, 9, b"10"))

        ctl.drop()
        data.drop()
        p.wait_line("plugin geo:", "reconnecting in")
        ctl = d.session(self, p, 2)
        p.wait_line("welcomed as generation 2")
        ctl.send(fr.PING, 5)
        f = ctl.next()
        self.assertEqual((f.type, f.id), (fr.PONG, 5))
        data = self.open_functions(d, ctl, 1)
        data.send(fr.CALL, 8, fr.call_payload("double", b"4"))
        f = data.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.RESULT, 8, b"8"))

        ctl.send(fr.SHUTDOWN)
        self.assertEqual(p.wait(), 0, p.seen)

    def test_heartbeat_silence_reconnects(self):
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        d.session(self, p, 1, heartbeat_ms=100)  # and then never a ping
        line = p.wait_line("sent nothing for 300 ms (3 heartbeats)", "reconnecting in")
        self.assertNotIn("exiting", line)
        ctl = d.session(self, p, 2)
        ctl.send(fr.SHUTDOWN)
        self.assertEqual(p.wait(), 0, p.seen)

    def test_tls_failures_are_logged_and_retried(self):
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        # A daemon certificate from another CA: the plugin refuses it.
        for _ in range(2):
            with self.assertRaises(ssl.SSLError):
                d.accept(["plugvisor.1"], cert="other-server")
            p.wait_line("TLS handshake with %s" % d.address, "certificate did not verify", remote.CA, "reconnecting in")
        # The daemon refuses the plugin's certificate (it trusts another CA).
        with self.assertRaises(ssl.SSLError):
            d.accept(["plugvisor.1"], client_ca="other")
        p.wait_line("refused by the daemon? Its log says why", remote.CERT, "reconnecting in")
        # And it keeps trying: the next good daemon gets a session.
        ctl = d.session(self, p, 1)
        ctl.send(fr.SHUTDOWN)
        self.assertEqual(p.wait(), 0, p.seen)

    def test_backoff_grows_while_nobody_answers(self):
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        waits = []
        for _ in range(4):
            raw = d.accept_raw()
            raw.close()  # not even TLS: the connection just ends
            line = p.wait_line("reconnecting in")
            waits.append(float(line.rsplit(" ", 1)[1].rstrip("s")))
        for i, w in enumerate(waits):
            base = remote.BACKOFF_MIN * 2 ** i
            self.assertTrue(base * 0.8 - 0.01 <= w <= base * 1.2 + 0.01, (i, waits))

    def serving_then_sigterm(self):
        """A welcomed instance that got SIGTERM and said it serves on."""
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        ctl = d.session(self, p, 1)
        p.wait_line("welcomed as generation 1")
        p.p.terminate()
        p.wait_line("SIGTERM: serving on")
        return d, p, ctl

    def test_sigterm_serves_on_until_retired(self):
        # An orchestrator rolling the instance: it keeps serving (the daemon
        # may be handing its work over), exits 0 on shutdown.
        d, p, ctl = self.serving_then_sigterm()
        data = self.open_functions(d, ctl, 1)
        data.send(fr.CALL, 3, fr.call_payload("double", b"21"))
        f = data.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.RESULT, 3, b"42"))
        ctl.send(fr.SHUTDOWN)
        self.assertEqual(p.wait(), 0, p.seen)

    def test_sigterm_says_leaving_to_a_host_that_knows_it(self):
        # The welcome lists "leaving": SIGTERM sends one leaving frame (id 0,
        # empty) and it serves on. Without the feature it sends none (the
        # test above: the next frame there is open's ok).
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        ctl = d.session(self, p, 1, features=["other", "leaving"])
        p.wait_line("welcomed as generation 1")
        p.p.terminate()
        f = ctl.next()
        self.assertEqual((f.type, f.id, f.payload), (fr.LEAVING, 0, b""))
        p.p.terminate()  # a second SIGTERM says nothing more
        p.wait_line("SIGTERM: serving on")
        p.wait_line("SIGTERM: serving on")
        ctl.send(fr.PING, 5)
        f = ctl.next()
        self.assertEqual((f.type, f.id), (fr.PONG, 5))
        ctl.send(fr.SHUTDOWN)
        self.assertEqual(p.wait(), 0, p.seen)

    def test_sigterm_then_lost_connection_exits_0(self):
        _, p, ctl = self.serving_then_sigterm()
        ctl.drop()
        self.assertEqual(p.wait(), 0, p.seen)
        self.assertTrue(any("exiting (SIGTERM)" in l for l in p.seen), p.seen)
        self.assertFalse(any("reconnecting in" in l for l in p.seen), p.seen)

    def test_sigterm_without_a_session_exits_0_at_once(self):
        # Nobody listens: it is between reconnect attempts. As PID 1 of a
        # container the default disposition would ignore SIGTERM.
        d = Daemon(self, self.pki)
        addr = d.address
        d.close()
        p = Plugin(self, connect_env(self.pki, addr))
        p.wait_line("plugin geo:", "reconnecting in")
        p.p.terminate()
        self.assertEqual(p.wait(), 0, p.seen)

    def test_refuse_exits_1_with_the_reason(self):
        d = Daemon(self, self.pki)
        p = Plugin(self, connect_env(self.pki, d.address))
        c = d.accept(["plugvisor.1"])
        c.sp_handshake()
        self.assertEqual(c.next().type, fr.HELLO)
        c.send(fr.REFUSE, 0, b'{"error":"geo 1.2.0 cannot take over: no function lookup"}')
        self.assertEqual(p.wait(), 1)
        self.assertTrue(any("refused" in l and "no function lookup" in l for l in p.seen), p.seen)

    def test_settings_from_the_environment(self):
        env = connect_env(self.pki, "tls+tcp://[::1]:9443")
        del env[remote.SERVER_NAME]
        r = remote.Remote.from_env(env)
        self.assertEqual((r.host, r.port, r.server_name, r.address), ("::1", 9443, "::1", "tls+tcp://[::1]:9443"))
        env[remote.CONNECT] = "tls+tcp://plugvisor.default.svc:443"
        env[remote.SERVER_NAME] = "daemon.example"
        r = remote.Remote.from_env(env)
        self.assertEqual((r.host, r.port, r.server_name), ("plugvisor.default.svc", 443, "daemon.example"))
        with self.assertRaises(ValueError) as e:
            r.dial("ipc:///tmp/x", fr.DEFAULT_MAX_FRAME, TIMEOUT)
        self.assertIn("only mux://ID", str(e.exception))

    def test_unreadable_or_bad_files_exit_2_naming_the_variable(self):
        junk = os.path.join(self.tmp, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        cases = [
            ({remote.KEY: os.path.join(self.tmp, "missing.pem")}, [remote.KEY, "missing.pem", "cannot read"]),
            ({remote.CA: junk}, [remote.CA, "junk.pem"]),
            ({remote.KEY: self.pki["server"].replace(".pem", "-key.pem")}, [remote.CERT, remote.KEY]),
        ]
        for over, want in cases:
            with self.subTest(over=over):
                p = Plugin(self, connect_env(self.pki, "tls+tcp://127.0.0.1:9", **over))
                self.assertEqual(p.wait(), 2, p.seen)
                self.assertTrue(any(all(w in l for w in want) for l in p.seen), (want, p.seen))


class EnvTest(unittest.TestCase):
    """What needs no certificates: the environment checks."""

    def run_plugin(self, env):
        p = Plugin(self, env)
        return p.wait(), "\n".join(p.seen)

    def test_without_any_plugvisor_variable_it_refuses_to_run(self):
        code, err = self.run_plugin({})
        self.assertEqual(code, 2)
        self.assertIn("must be started by plugvisor", err)
        self.assertIn("PLUGVISOR_CONNECT=tls+tcp://HOST:PORT", err)

    def test_bad_connect_settings_exit_2(self):
        cases = [
            ({remote.CONNECT: "tcp://127.0.0.1:9443"}, [remote.CONNECT, "tls+tcp://HOST:PORT"]),
            ({remote.CONNECT: "tls+tcp://host"}, [remote.CONNECT, "tls+tcp://HOST:PORT"]),
            ({remote.CONNECT: "tls+tcp://host:9443", remote.CERT: "/c.pem"}, [remote.KEY, remote.CA, "are not"]),
        ]
        for env, want in cases:
            with self.subTest(env=env):
                code, err = self.run_plugin(env)
                self.assertEqual(code, 2, err)
                for w in want:
                    self.assertIn(w, err)

    def test_address_forms(self):
        d = tempfile.mkdtemp(prefix="pvenv")
        self.addCleanup(shutil.rmtree, d, True)
        files = {}
        for v in (remote.CERT, remote.KEY, remote.CA):
            files[v] = os.path.join(d, v)
            with open(files[v], "w") as f:
                f.write("x")
        with self.assertRaises(remote.ConfigError) as e:  # files readable, but no PEM in them
            remote.Remote.from_env(dict(files, **{remote.CONNECT: "tls+tcp://[::1]:9443"}))
        self.assertIn(remote.CERT, str(e.exception))
        for bad in ("tls+tcp://h:0", "tls+tcp://h:70000", "tls+tcp://:9443", "tls+tcp://a b:1", "tls+tcp://h:1/x"):
            with self.subTest(bad=bad), self.assertRaises(remote.ConfigError) as e:
                remote.Remote.from_env(dict(files, **{remote.CONNECT: bad}))
            self.assertIn("want tls+tcp://HOST:PORT", str(e.exception))

if __name__ == "__main__":
    unittest.main()
