"""Typed R values (PROTOCOL.md, "Typed values") to Python and back.

decode(typed) maps the wire form to Python:

- NULL -> None; NA (in any vector) -> None.
- An atomic vector of length one with no attributes -> a scalar: bool,
  int, float (NaN, inf kept), str, complex; raw -> bytes (always).
- Other atomic vectors and lists -> RVector (a list) with .names (list of
  str, None for an NA name, or None when unnamed), .attrs (the other
  attributes, decoded, e.g. {"dim": RVector([2, 3])}) and .rtype (the R
  type, which encode keeps); v["a"] finds an element by name. A length-one
  NA becomes None, and goes back as NULL: its type is lost.
- factor -> Factor (an RVector of labels, None for NA) with .levels.
- Date -> datetime.date; POSIXct -> datetime.datetime, aware, in UTC;
  length one -> a scalar, else an RVector of them (None for NA).
- data.frame -> DataFrame: a dict of column name -> column (list-like,
  never collapsed to a scalar), with .row_names (None when automatic) and
  .rows() -> list of dicts.
- code, environments, S4 and unsupported values -> RObject: a dict of the
  typed form, with .type; RObject.repr is its display text where it has
  one.

encode(value) is the reverse, for tool answers (`typed`): None -> NULL,
bool -> logical, int -> integer (double outside R's integer range),
float -> double, str -> character, bytes -> raw, complex -> complex,
date/datetime -> Date/POSIXct, Factor, DataFrame, RVector (its element
types decide the vector type), list/tuple -> an atomic vector when every
element is a scalar of one kind (None as NA; ints and floats together make
a double), else a list; dict -> a named list; RObject -> itself.
"""

import base64
import datetime
import math

_EPOCH = datetime.date(1970, 1, 1)
_UTC = datetime.timezone.utc
_INT_MIN, _INT_MAX = -(2 ** 31) + 1, 2 ** 31 - 1  # -2^31 is NA_integer_


class RVector(list):
    """An R vector or list: a list of decoded elements with .names, .attrs
    and .rtype."""

    def __init__(self, items=(), names=None, attrs=None, rtype=None):
        super().__init__(items)
        self.names = list(names) if names is not None else None
        self.attrs = dict(attrs or {})
        # The R type it was decoded from ("list", "double", ...), which
        # encode() keeps; None: decided by the elements.
        self.rtype = rtype

    def __getitem__(self, key):
        if isinstance(key, str):
            if self.names is not None and key in self.names:
                return list.__getitem__(self, self.names.index(key))
            raise KeyError(key)
        return list.__getitem__(self, key)

    def get(self, key, default=None):
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def to_dict(self):
        """{name: element} (later duplicates win; unnamed elements dropped)."""
        return {n: v for n, v in zip(self.names or (), self) if n}

    def __eq__(self, other):
        if isinstance(other, RVector):
            return list.__eq__(self, other) and self.names == other.names and self.attrs == other.attrs
        return list.__eq__(self, other)

    __hash__ = None

    def __repr__(self):
        extra = ""
        if self.names is not None:
            extra += f", names={self.names!r}"
        if self.attrs:
            extra += f", attrs={self.attrs!r}"
        return f"{type(self).__name__}({list.__repr__(self)}{extra})"


class Factor(RVector):
    """An R factor: its labels (None for NA), with .levels."""

    def __init__(self, labels=(), levels=None, names=None, attrs=None):
        super().__init__(labels, names, attrs)
        if levels is None:
            levels = sorted({x for x in self if x is not None})
        self.levels = list(levels)

    def __eq__(self, other):
        return RVector.__eq__(self, other) and getattr(other, "levels", self.levels) == self.levels

    __hash__ = None

    def __repr__(self):
        return f"Factor({list.__repr__(self)}, levels={self.levels!r})"


class DataFrame(dict):
    """An R data frame: {column name: column}, columns as decoded (RVector,
    Factor, ...), never collapsed to scalars; .row_names is None when R's
    row names are automatic (1..n)."""

    def __init__(self, columns=(), row_names=None):
        super().__init__(columns)
        self.row_names = list(row_names) if row_names is not None else None

    @property
    def nrow(self):
        return len(next(iter(self.values()))) if self else len(self.row_names or ())

    def rows(self):
        """The rows as a list of {column: value}."""
        cols = list(self.items())
        return [{n: c[i] for n, c in cols} for i in range(self.nrow)]

    def __repr__(self):
        rn = f", row_names={self.row_names!r}" if self.row_names is not None else ""
        return f"DataFrame({dict.__repr__(self)}{rn})"


class RObject(dict):
    """A value with no Python counterpart (a function, call, formula,
    symbol, environment, S4 object, or an unsupported one): its typed form."""

    @property
    def type(self):
        return self.get("type")

    @property
    def repr(self):
        return self.get("repr") or self.get("source") or self.get("name") or (
            self.get("value") if self.get("type") == "symbol" else None)


# ---- decoding ------------------------------------------------------------

def _double(x):
    if isinstance(x, str):
        return {"NA": None, "NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}[x]
    return float(x)


def _elements(v):
    t, raw = v["type"], v.get("value")
    if t == "logical":
        return [None if x is None else bool(x) for x in raw]
    if t == "integer":
        return [None if x is None else int(x) for x in raw]
    if t == "double":
        return [None if x is None else _double(x) for x in raw]
    if t == "character":
        return list(raw)
    if t == "complex":
        return [None if x is None or (x["re"] == "NA" and x["im"] == "NA")
                else complex(_double(x["re"]), _double(x["im"])) for x in raw]
    if t == "list":
        return [decode(x) for x in raw]
    raise ValueError(f"not a vector type: {t}")


def _classes(attrs):
    c = attrs.get("class")
    return list(c.get("value") or []) if c else []


def decode(v):
    """A typed value (a dict of its wire form) as a Python value."""
    if v is None:
        return None
    t = v.get("type")
    if t == "NULL":
        return None
    if t == "raw":
        return base64.b64decode(v.get("value") or "")
    if t not in ("logical", "integer", "double", "character", "complex", "list"):
        return RObject(v)
    attrs = dict(v.get("attributes") or {})
    classes = _classes(attrs)
    items = _elements(v)
    names = attrs.pop("names", None)
    names = names.get("value") if names else None

    if t == "list" and "data.frame" in classes:
        rn = attrs.get("row.names")
        row_names = None
        if rn and rn.get("type") == "character":
            row_names = rn.get("value")
        return DataFrame(zip(names or [str(i + 1) for i in range(len(items))],
                             [c if isinstance(c, (list, bytes)) else RVector([c]) for c in items]), row_names)
    if t == "integer" and "factor" in classes:
        levels = (attrs.pop("levels", None) or {}).get("value") or []
        attrs.pop("class", None)
        labels = [None if i is None or not 1 <= i <= len(levels) else levels[i - 1] for i in items]
        return Factor(labels, levels, names, {k: decode(a) for k, a in attrs.items()})
    if t in ("double", "integer") and ("Date" in classes or "POSIXct" in classes):
        if "Date" in classes:
            conv = [None if x is None or not math.isfinite(x) else _EPOCH + datetime.timedelta(days=math.floor(x))
                    for x in items]
        else:
            conv = [None if x is None or not math.isfinite(x)
                    else datetime.datetime(1970, 1, 1, tzinfo=_UTC) + datetime.timedelta(seconds=x) for x in items]
        attrs.pop("class", None)
        attrs.pop("tzone", None)
        if len(conv) == 1 and names is None and not attrs:
            return conv[0]
        return RVector(conv, names, {k: decode(a) for k, a in attrs.items()})
    if t != "list" and len(items) == 1 and names is None and not attrs:
        return items[0]
    return RVector(items, names, {k: decode(a) for k, a in attrs.items()}, t)


# ---- encoding ------------------------------------------------------------

def _wire_double(x):
    if x is None:
        return "NA"
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return x


def _kind(x):
    """The R vector type a Python scalar belongs to, or None (not a scalar)."""
    if isinstance(x, bool):
        return "logical"
    if isinstance(x, int):
        return "integer" if _INT_MIN <= x <= _INT_MAX else "double"
    if isinstance(x, float):
        return "double"
    if isinstance(x, str):
        return "character"
    if isinstance(x, complex):
        return "complex"
    return None


_ORDER = ["logical", "integer", "double", "complex"]


def _atomic_type(items):
    """The atomic type all items fit in, or None (a list is needed)."""
    if not items:
        return None  # [] is list()
    kinds = {_kind(x) for x in items if x is not None}
    if None in kinds or not all(x is None or _kind(x) for x in items):
        return None
    if not kinds:
        return "logical"  # all NA
    if len(kinds) == 1:
        return kinds.pop()
    if "character" in kinds:
        return None
    if "logical" in kinds:
        return None  # R would coerce TRUE to 1; keep what was sent as it is
    return max(kinds, key=_ORDER.index)


def _vector(t, items):
    if t == "logical":
        vals = [None if x is None else bool(x) for x in items]
    elif t == "integer":
        vals = [None if x is None else int(x) for x in items]
    elif t == "double":
        vals = [_wire_double(x) for x in items]
    elif t == "character":
        vals = [None if x is None else str(x) for x in items]
    elif t == "complex":
        vals = [None if x is None else {"re": _wire_double(complex(x).real), "im": _wire_double(complex(x).imag)}
                for x in items]
    else:
        vals = [encode(x) for x in items]
    return {"type": t, "value": vals}


def _chr(values):
    return {"type": "character", "value": list(values)}


def _with_attrs(v, names=None, attrs=None):
    a = dict(v.get("attributes") or {})
    if names is not None:
        a["names"] = _chr(names)
    for k, x in (attrs or {}).items():
        a[k] = encode(x)
    if a:
        v["attributes"] = a
    return v


def _days(d):
    return (d - _EPOCH).days


def _seconds(dt):
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    return (dt - datetime.datetime(1970, 1, 1, tzinfo=_UTC)).total_seconds()


def _dates(items):
    """A Date or POSIXct vector when every item is one (None for NA), else None."""
    present = [x for x in items if x is not None]
    if not present:
        return None
    if all(isinstance(x, datetime.datetime) for x in present):
        return {"type": "double", "value": [_wire_double(None if x is None else _seconds(x)) for x in items],
                "attributes": {"class": _chr(["POSIXct", "POSIXt"]), "tzone": _chr(["UTC"])}}
    if all(isinstance(x, datetime.date) and not isinstance(x, datetime.datetime) for x in present):
        return {"type": "double", "value": [_wire_double(None if x is None else _days(x)) for x in items],
                "attributes": {"class": _chr(["Date"])}}
    return None


def encode(x):
    """A Python value as a typed R value (a dict of the wire form)."""
    if x is None:
        return {"type": "NULL"}
    if isinstance(x, RObject):
        return dict(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return {"type": "raw", "value": base64.b64encode(bytes(x)).decode("ascii")}
    if isinstance(x, (datetime.date, datetime.datetime)):
        return _dates([x])
    if _kind(x):
        return _vector(_kind(x), [x])
    if isinstance(x, Factor):
        levels = list(x.levels)
        codes = [None if v is None else levels.index(v) + 1 for v in x]
        v = _with_attrs({"type": "integer", "value": codes}, x.names, x.attrs)
        v.setdefault("attributes", {}).update({"levels": _chr(levels), "class": _chr(["factor"])})
        return v
    if isinstance(x, DataFrame):
        cols = [encode(list(c) if not isinstance(c, RVector) else c) for c in x.values()]
        n = x.nrow
        rn = _chr(x.row_names) if x.row_names is not None else {"type": "integer", "value": [None, -n]}
        return {"type": "list", "value": cols, "attributes": {
            "names": _chr(list(x.keys())), "class": _chr(["data.frame"]), "row.names": rn}}
    if isinstance(x, dict):
        return {"type": "list", "value": [encode(v) for v in x.values()],
                "attributes": {"names": _chr([str(k) for k in x.keys()])}}
    if isinstance(x, (list, tuple)):
        items = list(x)
        names = getattr(x, "names", None)
        attrs = getattr(x, "attrs", None)
        d = _dates(items)
        if d is not None:
            return _with_attrs(d, names, attrs)
        t = getattr(x, "rtype", None) or _atomic_type(items)
        return _with_attrs(_vector(t or "list", items), names, attrs)
    raise TypeError(f"cannot send a {type(x).__name__} to R")
