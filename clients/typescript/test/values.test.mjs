// decode() and encode() on their own (no server): the typed forms as
// PROTOCOL.md and rvalue/doc.go write them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode, rNames, R, DataFrame, RCode, RUnsupported } from "../dist/src/index.js";

const chr = (...v) => ({ type: "character", value: v });

test("decode: NULL, NA, special doubles, scalars and vectors", () => {
  assert.equal(decode({ type: "NULL" }), null);
  assert.equal(decode({ type: "logical", value: [null] }), null);
  assert.deepEqual(decode({ type: "double", value: [1.5, "NA", null, "NaN", "Inf", "-Inf"] }), [1.5, null, null, NaN, Infinity, -Infinity]);
  assert.equal(decode({ type: "integer", value: [7] }), 7);
  assert.deepEqual(decode({ type: "integer", value: [] }), []);
  assert.deepEqual(decode({ type: "character", value: ["a", null] }), ["a", null]);
  assert.deepEqual(decode({ type: "complex", value: [{ re: 1, im: -2 }, null] }), [{ re: 1, im: -2 }, null]);
  assert.deepEqual(decode({ type: "raw", value: "AAH/" }), new Uint8Array([0, 1, 255]));
});

test("decode: integers stay distinguishable with integers: bigint", () => {
  const v = { type: "list", value: [{ type: "integer", value: [1, null] }, { type: "double", value: [1] }] };
  assert.deepEqual(decode(v, { integers: "bigint" }), [[1n, null], 1]);
  assert.deepEqual(decode(v), [[1, null], 1]);
});

test("decode: names kept, also empty, NA, repeated and integer-like ones", () => {
  const v = { type: "double", value: [1, 2, 3, 4, 5], attributes: { names: chr("b", "", "b", null, "10") } };
  const o = decode(v);
  assert.deepEqual({ ...o }, { b: 1, 2: 2, "b.1": 3, 4: 4, 10: 5 });
  assert.deepEqual(rNames(o), ["b", "", "b", null, "10"]);
  // A length-one named vector keeps its name.
  assert.deepEqual({ ...decode({ type: "integer", value: [1], attributes: { names: chr("a") } }) }, { a: 1 });
  // __proto__ is an ordinary key.
  const p = decode({ type: "list", value: [{ type: "double", value: [1] }], attributes: { names: chr("__proto__") } });
  assert.equal(Object.getPrototypeOf(p), Object.prototype);
  assert.deepEqual(Object.keys(p), ["__proto__"]);
  // An unnamed list of one stays a list.
  assert.deepEqual(decode({ type: "list", value: [{ type: "double", value: [1] }] }), [1]);
});

test("decode: factors, dates, POSIXct, matrices, data frames", () => {
  const f = { type: "integer", value: [2, null, 1], attributes: { levels: chr("lo", "hi"), class: chr("factor") } };
  assert.deepEqual(decode(f), ["hi", null, "lo"]);
  assert.deepEqual(decode({ type: "double", value: [19724, "NA"], attributes: { class: chr("Date") } }), [new Date("2024-01-02T00:00:00Z"), null]);
  assert.deepEqual(decode({ type: "double", value: [1.5], attributes: { class: chr("POSIXct", "POSIXt") } }), new Date(1500));
  assert.deepEqual(decode({ type: "integer", value: [1, 2, 3, 4, 5, 6], attributes: { dim: { type: "integer", value: [2, 3] } } }), [
    [1, 3, 5],
    [2, 4, 6],
  ]);
  const df = decode({
    type: "list",
    value: [{ type: "integer", value: [1, 2] }, { ...f, value: [1, 2] }],
    attributes: { names: chr("a", "g"), class: chr("data.frame"), "row.names": { type: "integer", value: [null, -2] } },
  });
  assert.ok(df instanceof DataFrame);
  assert.equal(df.nrow, 2);
  assert.deepEqual(df.names, ["a", "g"]);
  assert.deepEqual(df.columns, { a: [1, 2], g: ["lo", "hi"] });
  assert.deepEqual(df.rows(), [{ a: 1, g: "lo" }, { a: 2, g: "hi" }]);
  assert.equal(df.rowNames, null);
  const empty = decode({ type: "list", value: [], attributes: { names: chr(), class: chr("data.frame"), "row.names": { type: "integer", value: [null, -3] } } });
  assert.equal(empty.nrow, 3);
});

test("decode: code, environments (cycles), S4, unsupported", () => {
  const code = decode({ type: "language", value: [{ type: "symbol", value: "f" }], repr: "f()" });
  assert.ok(code instanceof RCode);
  assert.equal(String(code), "f()");
  const env = decode({
    type: "environment",
    kind: "local",
    name: "",
    id: "e1",
    names: ["me", "x"],
    values: [{ type: "environment", kind: "local", name: "", ref: "e1" }, { type: "double", value: [1] }],
  });
  assert.equal(env.me, env);
  assert.equal(env.x, 1);
  assert.deepEqual(decode({ type: "S4", attributes: { x: { type: "double", value: [1] }, class: chr("P") } }), { x: 1 });
  const u = decode({ type: "unsupported", class: ["externalptr"], repr: "<pointer>" });
  assert.ok(u instanceof RUnsupported);
  assert.deepEqual(u.rClass, ["externalptr"]);
});

test("encode: scalars, vectors, NA, objects, dates, raw", () => {
  assert.deepEqual(encode(null), { type: "NULL" });
  assert.deepEqual(encode(undefined), { type: "NULL" });
  assert.deepEqual(encode(true), { type: "logical", value: [true] });
  assert.deepEqual(encode(2), { type: "double", value: [2] });
  assert.deepEqual(encode(2n), { type: "integer", value: [2] });
  assert.deepEqual(encode([1, null, NaN, -Infinity]), { type: "double", value: [1, "NA", "NaN", "-Inf"] });
  assert.deepEqual(encode([1n, null]), { type: "integer", value: [1, null] });
  assert.deepEqual(encode([1n, 2.5]), { type: "double", value: [1, 2.5] });
  assert.deepEqual(encode(["a", null]), { type: "character", value: ["a", null] });
  assert.deepEqual(encode([null, null]), { type: "logical", value: [null, null] });
  assert.deepEqual(encode([]), { type: "list", value: [] });
  assert.deepEqual(encode([1, "a"]), { type: "list", value: [encode(1), encode("a")] });
  assert.deepEqual(encode({ a: 1, b: [true] }), {
    type: "list",
    value: [encode(1), encode(true)],
    attributes: { names: chr("a", "b") },
  });
  assert.deepEqual(encode(new Date(1500)), {
    type: "double",
    value: [1.5],
    attributes: { class: chr("POSIXct", "POSIXt"), tzone: chr("UTC") },
  });
  assert.deepEqual(encode(new Uint8Array([0, 1, 255])), { type: "raw", value: "AAH/" });
  assert.deepEqual(R.date(new Date("2024-01-02T13:00:00Z")).value, { type: "double", value: [19724], attributes: { class: chr("Date") } });
  assert.deepEqual(encode(R.integer([1, null])), { type: "integer", value: [1, null] });
  assert.deepEqual(encode(R.list([1])), { type: "list", value: [encode(1)] });
  assert.deepEqual(encode(R.json({ t: 72 })), { type: "json", value: { t: 72 } });
  assert.deepEqual(encode(R.factor(["b", null, "a"])), {
    type: "integer",
    value: [2, null, 1],
    attributes: { levels: chr("a", "b"), class: chr("factor") },
  });
  assert.deepEqual(encode(R.dataFrame({ a: [1n, 2n], s: ["x", null] })), {
    type: "list",
    value: [encode([1n, 2n]), encode(["x", null])],
    attributes: { names: chr("a", "s"), class: chr("data.frame"), "row.names": { type: "integer", value: [null, -2] } },
  });
});

test("encode refuses what R cannot hold", () => {
  assert.throws(() => encode("a\u0000b"), /NUL/);
  assert.throws(() => encode(() => 1), TypeError);
  assert.throws(() => encode(2n ** 31n), RangeError);
  assert.throws(() => encode(-(2n ** 31n)), RangeError); // R's NA_integer_
  const cyc = {};
  cyc.self = cyc;
  assert.throws(() => encode(cyc), /deeper/);
  assert.throws(() => R.dataFrame({ a: [1, 2], b: [1] }), RangeError);
});

test("decode then encode keeps a data frame of integers, strings and NA", () => {
  const wire = {
    type: "list",
    value: [{ type: "integer", value: [1, null] }, { type: "character", value: ["x", null] }],
    attributes: { names: chr("a", "b"), class: chr("data.frame"), "row.names": { type: "integer", value: [null, -2] } },
  };
  assert.deepEqual(encode(decode(wire, { integers: "bigint" })), wire);
});
