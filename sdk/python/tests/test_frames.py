import struct
import unittest

from plugvisor import frames as fr

# Printed once by the Go encoder (transport.AppendState / RestorePayload /
# AppendFrame+CallPayload) for the values in the tests below.
GO_STATE = bytes.fromhex(
    "000000030005656d70747900000000000f66756e6374696f6e2f646f75626c65000000010000000563616c6c7300"
    "0000013300077469636b732d3100000003000000036366670000000b7b2261223a5b312c325d7d000000046e616d"
    "650000000422c3a922000000046e657874000000023432")
GO_RESTORE = bytes.fromhex(
    "000000317b2266726f6d5f76657273696f6e223a22312e302e30222c2266726f6d5f73746174655f76657273696f"
    "6e223a2231227d0000000100017300000001000000016b0000000131")
GO_CALL = bytes.fromhex("0124000000000000000000070006646f75626c653231")

STATE = {
    "function/double": {"calls": b"3"},
    "ticks-1": {"next": b"42", "name": '"é"'.encode(), "cfg": b'{"a":[1,2]}'},
    "empty": {},
}


class FrameTest(unittest.TestCase):
    def test_encode_parse(self):
        b = fr.encode_frame(fr.DATA, 7, b'"x"')
        self.assertEqual(b, bytes([1, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]) + b'"x"')
        f = fr.parse_frame(b)
        self.assertEqual((f.type, f.id, f.payload, f.flags), (fr.DATA, 7, b'"x"', 0))
        self.assertEqual(fr.parse_message(b), [f])

    def test_large_id(self):
        f = fr.parse_frame(fr.encode_frame(fr.ACK, 2 ** 64 - 1))
        self.assertEqual(f.id, 2 ** 64 - 1)

    def test_batch_round_trip(self):
        parts = [fr.encode_frame(fr.DATA, i, str(i).encode()) for i in range(1, 4)]
        msg = fr.encode_message(parts)
        self.assertEqual(msg[:12], fr.encode_frame(fr.BATCH, 3))
        got = fr.parse_message(msg)
        self.assertEqual([(f.type, f.id, f.payload) for f in got], [(fr.DATA, i, str(i).encode()) for i in range(1, 4)])
        self.assertEqual(fr.encode_message(parts[:1]), parts[0], "a lone frame is not wrapped")

    def test_empty_batch(self):
        self.assertEqual(fr.parse_message(fr.encode_batch([])), [])

    def test_call_payload(self):
        self.assertEqual(fr.encode_frame(fr.CALL, 7, fr.call_payload("double", b"21")), GO_CALL)
        self.assertEqual(fr.parse_call(fr.call_payload("double", b"21")), ("double", b"21"))
        self.assertEqual(fr.parse_call(fr.call_payload("f")), ("f", b""))
        for bad in (b"", b"\x00", b"\x00\x05ab"):
            with self.assertRaises(fr.MalformedFrame):
                fr.parse_call(bad)

    def assertMalformed(self, msg, text):
        with self.assertRaises(fr.MalformedFrame) as cm:
            fr.parse_message(msg)
        self.assertIn(text, str(cm.exception))

    def test_malformed(self):
        good = fr.encode_frame(fr.DATA, 1, b"1")
        self.assertMalformed(b"\x02" + good[1:], "protocol version 2")
        self.assertMalformed(good[:1] + b"\x63" + good[2:], "unknown frame type 99")
        self.assertMalformed(good[:11], "shorter than the 12-byte header")
        self.assertMalformed(b"", "shorter")

    def test_malformed_batches(self):
        one = fr.encode_frame(fr.DATA, 1, b"1")
        ok = fr.encode_batch([one, one])
        # Announces 3, carries 2.
        self.assertMalformed(fr.encode_frame(fr.BATCH, 3) + ok[12:], "announced 3 frames, carried 2")
        self.assertMalformed(fr.encode_frame(fr.BATCH, 1) + struct.pack(">I", 0)[:0], "announced 1 frames, carried 0")
        # Entry length overruns.
        self.assertMalformed(ok[:-1], "overruns")
        # Truncated length prefix.
        self.assertMalformed(ok + b"\x00\x00", "length prefix")
        # Nested.
        self.assertMalformed(fr.encode_batch([fr.encode_batch([one])]), "nested batch")
        # A bad entry.
        self.assertMalformed(fr.encode_batch([one, b"\x01\x99" + one[2:]]), "unknown frame type 153")
        self.assertMalformed(fr.encode_batch([one, one[:5]]), "shorter than")


class StateBlobTest(unittest.TestCase):
    def test_golden_from_go(self):
        self.assertEqual(fr.encode_state(STATE), GO_STATE)
        self.assertEqual(fr.parse_state(GO_STATE), STATE)

    def test_round_trip_sorted(self):
        s = {"b": {"z": b"1", "a": b"[]"}, "a": {}}
        blob = fr.encode_state(s)
        self.assertEqual(fr.parse_state(blob), s)
        self.assertEqual(blob, fr.encode_state(dict(reversed(list(s.items())))))
        self.assertEqual(fr.encode_state({}), b"\x00\x00\x00\x00")

    def test_malformed(self):
        for bad in (b"", GO_STATE[:-1], GO_STATE + b"\x00", b"\x00\x00\x00\x01\x00\x05ab"):
            with self.assertRaises(fr.MalformedFrame):
                fr.parse_state(bad)

    def test_restore_payload(self):
        meta = {"from_version": "1.0.0", "from_state_version": "1"}
        self.assertEqual(fr.restore_payload(meta, {"s": {"k": b"1"}}), GO_RESTORE)
        self.assertEqual(fr.parse_restore(GO_RESTORE), (meta, {"s": {"k": b"1"}}))
        for bad in (b"", b"\x00\x00\x00\x09{}", b"\x00\x00\x00\x02[]\x00\x00\x00\x00"):
            with self.assertRaises(fr.MalformedFrame):
                fr.parse_restore(bad)


if __name__ == "__main__":
    unittest.main()


class BatchCallTest(unittest.TestCase):
    def test_round_trip_and_malformed(self):
        p = fr.call_batch_payload("double", [b"1", b"", b'"x"'])
        self.assertEqual(fr.parse_call_batch(p), ("double", [b"1", b"", b'"x"']))
        items = [(fr.ITEM_OK, b"2"), (fr.ITEM_ERROR, b"bad"), (fr.ITEM_PANIC, b"")]
        self.assertEqual(fr.parse_result_batch(fr.result_batch_payload(items)), items)
        for bad in (p[:-1], p + b"x", p[:8], b"\x00"):
            with self.assertRaises(fr.MalformedFrame):
                fr.parse_call_batch(bad)
        with self.assertRaises(fr.MalformedFrame):  # a count no payload can hold
            fr.parse_result_batch(b"\xff\xff\xff\xff")
        with self.assertRaises(fr.MalformedFrame):  # unknown status
            fr.parse_result_batch(fr.result_batch_payload([(7, b"")]))
