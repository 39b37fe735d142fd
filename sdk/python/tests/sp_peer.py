"""An SP PAIR v0 peer built on the SDK's socket layer, for interoperability
tests with other SP implementations (nngcat, mangos).

    python3 sp_peer.py ADDR HEX

Listens on ADDR (ipc://PATH or tcp://HOST:PORT, port 0 = any), prints
"READY <address>", accepts one peer, receives one message, prints
"GOT <hex>" and one "FRAME <type> <id> <payload hex>" line per frame in it,
sends the message HEX, waits for the peer to hang up, exits 0. Any failure
exits 1 with the reason on stderr; every wait is bounded.
"""

import sys

from plugvisor import frames as fr
from plugvisor.sp import Closed, listen

TIMEOUT = 10.0


def main(addr: str, reply_hex: str) -> int:
    ln = listen(addr)
    print("READY", ln.address, flush=True)
    conn = ln.accept(TIMEOUT)
    ln.close()
    conn.settimeout(TIMEOUT)
    msg = conn.recv()
    print("GOT", msg.hex(), flush=True)
    for f in fr.parse_message(msg):
        print("FRAME", f.type, f.id, f.payload.hex(), flush=True)
    conn.send(bytes.fromhex(reply_hex))
    try:
        conn.recv()
        print("unexpected second message", file=sys.stderr)
        return 1
    except Closed:
        pass
    conn.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except Exception as e:  # noqa: BLE001 - report any failure, exit 1
        print("sp_peer: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
