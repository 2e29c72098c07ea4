"""The value codec and error mapping, without a server."""

import datetime
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from securer_client import (ERRORS, BusyError, DataFrame, DrainingError, Factor, NotFoundError, RObject,  # noqa: E402
                            RVector, ServerError, decode, encode)


def chr_(*v):
    return {"type": "character", "value": list(v)}


class DecodeTest(unittest.TestCase):
    def test_decode(self):
        cases = [
            ("NULL", {"type": "NULL"}, None),
            ("NA logical", {"type": "logical", "value": [None]}, None),
            ("scalar double", {"type": "double", "value": [2]}, 2.0),
            ("scalar int", {"type": "integer", "value": [7]}, 7),
            ("string", chr_("é"), "é"),
            ("NA in vector", {"type": "integer", "value": [1, None]}, [1, None]),
            ("non-finite", {"type": "double", "value": ["Inf", "-Inf", "NA"]}, [math.inf, -math.inf, None]),
            ("complex", {"type": "complex", "value": [{"re": 1, "im": -2}]}, complex(1, -2)),
            ("raw", {"type": "raw", "value": "AAH/"}, b"\x00\x01\xff"),
            ("date", {"type": "double", "value": [19782], "attributes": {"class": chr_("Date")}},
             datetime.date(2024, 2, 29)),
            ("posixct", {"type": "double", "value": [0.5], "attributes": {"class": chr_("POSIXct", "POSIXt"),
                                                                          "tzone": chr_("UTC")}},
             datetime.datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=datetime.timezone.utc)),
        ]
        for name, typed, want in cases:
            with self.subTest(name):
                self.assertEqual(decode(typed), want)
        self.assertTrue(math.isnan(decode({"type": "double", "value": ["NaN"]})))

    def test_names_kept(self):
        v = decode({"type": "list", "value": [{"type": "NULL"}, chr_("x")],
                    "attributes": {"names": chr_("a", "")}})
        self.assertIsInstance(v, RVector)
        self.assertEqual(v.names, ["a", ""])
        self.assertIsNone(v["a"])
        self.assertEqual(v[1], "x")
        self.assertEqual(v.rtype, "list")
        with self.assertRaises(KeyError):
            v["nope"]

    def test_factor(self):
        f = decode({"type": "integer", "value": [2, None, 1],
                    "attributes": {"levels": chr_("lo", "hi"), "class": chr_("factor")}})
        self.assertIsInstance(f, Factor)
        self.assertEqual(list(f), ["hi", None, "lo"])
        self.assertEqual(f.levels, ["lo", "hi"])

    def test_data_frame(self):
        df = decode({"type": "list", "value": [{"type": "integer", "value": [1]}, chr_("a")],
                     "attributes": {"names": chr_("n", "s"), "class": chr_("data.frame"),
                                    "row.names": {"type": "integer", "value": [None, -1]}}})
        self.assertIsInstance(df, DataFrame)
        self.assertEqual(df["n"], [1])  # a column is never collapsed to a scalar
        self.assertEqual(df.rows(), [{"n": 1, "s": "a"}])
        self.assertIsNone(df.row_names)

    def test_code_is_an_object(self):
        v = decode({"type": "language", "value": [], "repr": "y ~ x"})
        self.assertIsInstance(v, RObject)
        self.assertEqual((v.type, v.repr), ("language", "y ~ x"))


class RoundTripTest(unittest.TestCase):
    """decode(encode(x)) == x for what the codec promises to keep."""

    def test_round_trip(self):
        values = [
            None, True, 3, 2.5, "s", b"\x00", complex(1, 2), [1, None, 3], [1.5, None], ["a", None],
            RVector([1.0, 2.0], names=["a", "b"], rtype="double"),
            RVector([1.0, "x"], names=["a", "b"], rtype="list"),
            RVector([1.0, 2.0], rtype="list"),
            Factor(["b", "a", None], levels=["a", "b"]),
            datetime.date(2000, 1, 1), datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
            DataFrame({"x": RVector([1, 2], rtype="integer"), "y": RVector(["a", "b"], rtype="character")}),
        ]
        for v in values:
            with self.subTest(repr(v)):
                back = decode(encode(v))
                self.assertEqual(back, v)
                self.assertIsInstance(back, type(v))

    def test_encode_forms(self):
        cases = [
            ("int vector", [1, 2], {"type": "integer", "value": [1, 2]}),
            ("ints and floats", [1, 2.5], {"type": "double", "value": [1.0, 2.5]}),
            ("big int", 2 ** 40, {"type": "double", "value": [float(2 ** 40)]}),
            ("mixed", [1, "a"], {"type": "list", "value": [{"type": "integer", "value": [1]}, chr_("a")]}),
            ("dict", {"k": None}, {"type": "list", "value": [{"type": "NULL"}], "attributes": {"names": chr_("k")}}),
            ("nan", math.nan, {"type": "double", "value": ["NaN"]}),
            ("empty", [], {"type": "list", "value": []}),
        ]
        for name, x, want in cases:
            with self.subTest(name):
                self.assertEqual(encode(x), want)
        with self.assertRaises(TypeError):
            encode(object())


class ErrorsTest(unittest.TestCase):
    def test_every_code_has_a_class(self):
        codes = ["bad_request", "not_found", "invalid_config", "pool_busy", "busy", "closed", "rejected", "limit",
                 "idle", "start_timeout", "start_failed", "sandbox_unavailable", "file_refused", "needs_sandbox",
                 "unauthorized", "draining", "canceled", "internal"]
        self.assertEqual(sorted(ERRORS), sorted(codes))
        for code in codes:
            e = ServerError.from_event({"type": "error", "error": {"code": code, "message": "m"}})
            self.assertIs(type(e), ERRORS[code])
            self.assertEqual((e.code, e.message), (code, "m"))
        self.assertIsInstance(ServerError.from_event({"error": {"code": "draining", "message": ""}}), DrainingError)
        e = ServerError.from_event({"error": {"code": "busy", "message": "", "retry_after": 2}})
        self.assertIsInstance(e, BusyError)
        self.assertEqual(e.retry_after, 2)
        self.assertIs(type(ServerError.from_event({"error": {"code": "new_code", "message": ""}})), ServerError)
        self.assertTrue(issubclass(NotFoundError, ServerError))


if __name__ == "__main__":
    unittest.main()
