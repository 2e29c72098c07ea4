// Typed R values (PROTOCOL.md, "Typed values"): the wire form, decoding
// it into ordinary JavaScript values and encoding JavaScript values back
// for tool answers.

/** An element of a double vector on the wire: NA as null or "NA". */
export type WireDouble = number | null | "NA" | "NaN" | "Inf" | "-Inf";

/** Attributes of a value: each one a typed value itself. */
export type RAttributes = { [name: string]: RValue };

/** One R value in the protocol's typed form. */
export type RValue =
  | { type: "NULL" }
  | { type: "logical"; value: (boolean | null)[]; attributes?: RAttributes; s4?: boolean }
  | { type: "integer"; value: (number | null)[]; attributes?: RAttributes; s4?: boolean }
  | { type: "double"; value: WireDouble[]; attributes?: RAttributes; s4?: boolean }
  | { type: "complex"; value: ({ re: WireDouble; im: WireDouble } | null)[]; attributes?: RAttributes; s4?: boolean }
  | { type: "character"; value: (string | null)[]; attributes?: RAttributes; s4?: boolean }
  | { type: "raw"; value: string; attributes?: RAttributes; s4?: boolean }
  | { type: "list"; value: RValue[]; attributes?: RAttributes; s4?: boolean; pairlist?: boolean }
  | { type: "json"; value: unknown }
  | { type: "unsupported"; class: string[]; repr: string }
  | { type: "symbol"; value: string }
  | { type: "language"; value: RValue[]; names?: string[]; repr?: string; attributes?: RAttributes }
  | {
      type: "closure";
      formals?: { names: string[]; values: RValue[] };
      body?: RValue;
      env?: RValue;
      source?: string;
      attributes?: RAttributes;
    }
  | { type: "primitive"; name: string }
  | {
      type: "environment";
      kind: "global" | "base" | "empty" | "namespace" | "package" | "local";
      name: string;
      id?: string;
      ref?: string;
      names?: string[];
      values?: RValue[];
      dropped?: number;
      attributes?: RAttributes;
    }
  | { type: "S4"; attributes?: RAttributes };

/** How decode() returns R integers. */
export type IntegerMode = "number" | "bigint";

export interface DecodeOptions {
  /**
   * "number" (the default): R integers and doubles both become `number`
   * (the typed form keeps which it was). "bigint": integers become
   * `bigint`, doubles stay `number`, so the two can be told apart and
   * encode() sends each back as what it was.
   */
  integers?: IntegerMode;
}

/**
 * The names of a decoded named vector or list, in R's order, exactly as R
 * had them (including empty, NA as null, and repeated names). The
 * decoded object's own keys are these names made usable as keys (see
 * decode()), and a JavaScript object lists integer-like keys first, so
 * this is the faithful record.
 */
export const R_NAMES: unique symbol = Symbol.for("securer.rNames");

/** The R names recorded on a decoded object, or undefined. */
export function rNames(x: unknown): (string | null)[] | undefined {
  if (x !== null && typeof x === "object") {
    return (x as { [R_NAMES]?: (string | null)[] })[R_NAMES];
  }
  return undefined;
}

/** Code that crossed as structure (a symbol, call, formula, function or primitive): never evaluated here. */
export class RCode {
  constructor(
    /** "symbol", "language", "closure" or "primitive". */
    readonly kind: string,
    /** Display text (R's deparse of it). */
    readonly text: string,
    /** The typed form, which encode() sends back unchanged. */
    readonly typed: RValue,
  ) {}
  toString(): string {
    return this.text;
  }
  toJSON(): string {
    return this.text;
  }
}

/** A value R could not send as itself (an external pointer, ...). */
export class RUnsupported {
  constructor(
    readonly rClass: string[],
    readonly repr: string,
  ) {}
}

/**
 * An R data frame, by columns. Each column is an array of decoded
 * elements (factors as their labels, Dates and POSIXct as Date, NA as
 * null), never unboxed, so a zero-row frame keeps its columns.
 */
export class DataFrame {
  /** Column names as R has them. */
  readonly names: string[];
  /** Columns by (unique) name, in order (a Factor only in a frame made to send). */
  readonly columns: { [name: string]: unknown[] | Factor };
  readonly nrow: number;
  /** Character row names, or null for R's automatic 1..n. */
  readonly rowNames: string[] | null;

  constructor(columns: { [name: string]: unknown[] | Factor }, rowNames: string[] | null = null, names?: string[], nrow?: number) {
    const keys = Object.keys(columns);
    this.names = names ?? keys;
    this.columns = columns;
    const len = (c: unknown[] | Factor) => (c instanceof Factor ? c.values.length : c.length);
    this.nrow = keys.length ? len(columns[keys[0]!]!) : rowNames ? rowNames.length : nrow ?? 0;
    for (const k of keys) {
      if (len(columns[k]!) !== this.nrow) {
        throw new RangeError(`data frame column ${JSON.stringify(k)} has ${len(columns[k]!)} rows, want ${this.nrow}`);
      }
    }
    if (rowNames && rowNames.length !== this.nrow) {
      throw new RangeError(`data frame has ${rowNames.length} row names for ${this.nrow} rows`);
    }
    this.rowNames = rowNames;
  }

  /** One column as an array (a Factor's labels). */
  column(name: string): unknown[] | undefined {
    const c = this.columns[name];
    return c instanceof Factor ? c.values : c;
  }

  /** The rows as objects keyed by column name. */
  rows(): { [name: string]: unknown }[] {
    const keys = Object.keys(this.columns);
    const cols = keys.map((k) => this.column(k)!);
    const out: { [name: string]: unknown }[] = [];
    for (let r = 0; r < this.nrow; r++) {
      out.push(Object.fromEntries(keys.map((k, j) => [k, cols[j]![r]])));
    }
    return out;
  }

  toJSON(): unknown {
    return this.rows();
  }
}

/** A factor to send to R: labels (null for NA) and, optionally, the levels in order. */
export class Factor {
  readonly levels: string[];
  constructor(
    readonly values: (string | null)[],
    levels?: string[],
  ) {
    this.levels = levels ?? [...new Set(values.filter((v): v is string => v !== null))].sort();
    const known = new Set(this.levels);
    for (const v of values) {
      if (v !== null && !known.has(v)) throw new RangeError(`factor value ${JSON.stringify(v)} is not among its levels`);
    }
  }
}

// Wrappers that tell encode() exactly what to send.
class Typed {
  constructor(readonly value: RValue) {}
}

const MAX_DEPTH = 100;

// ---- decoding ---------------------------------------------------------------

interface DecodeState {
  integers: IntegerMode;
  envs: Map<string, { [k: string]: unknown }>;
}

/**
 * Decode a typed value into ordinary JavaScript:
 *
 * - `NULL` is `null`; `NA` of any type is `null`; `NaN`, `Inf` and
 *   `-Inf` are `NaN`, `Infinity` and `-Infinity`.
 * - An atomic vector of length 1 without names is a scalar; otherwise an
 *   array. Logicals are booleans, characters strings, doubles numbers,
 *   integers numbers (or bigint, see DecodeOptions), complex numbers
 *   `{re, im}`, raw a Uint8Array.
 * - A vector or list with names is an object keyed by its names (an empty
 *   or NA name is its 1-based position; a repeated name gets ".1", ".2"
 *   as R's make.unique does); rNames() gives the exact names. An unnamed
 *   list is an array, also of length 1.
 * - A factor is its labels; a Date or POSIXct a Date; a data frame a
 *   DataFrame; a matrix or array nested arrays, the first index outermost.
 * - An environment is an object of its bindings (a shared or cyclic one
 *   is the same object), an S4 object an object of its slots; code is an
 *   RCode; a value R could not send an RUnsupported; a json value itself.
 */
export function decode(v: RValue, opts: DecodeOptions = {}): unknown {
  return dec(v, { integers: opts.integers ?? "number", envs: new Map() }, 1);
}

function attr(v: RValue, name: string): RValue | undefined {
  return "attributes" in v && v.attributes ? v.attributes[name] : undefined;
}

function strs(v: RValue | undefined): (string | null)[] | undefined {
  return v && v.type === "character" ? v.value : undefined;
}

function classes(v: RValue): string[] {
  return (strs(attr(v, "class")) ?? []).filter((c): c is string => c !== null);
}

function wireDouble(x: WireDouble): number | null {
  switch (x) {
    case null:
    case "NA":
      return null;
    case "NaN":
      return NaN;
    case "Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
  }
  return x;
}

// elements decodes the elements of an atomic vector (or list) one by one.
function elements(v: RValue, st: DecodeState, depth: number): unknown[] {
  const cls = classes(v);
  switch (v.type) {
    case "logical":
    case "character":
      return v.value.slice();
    case "integer": {
      if (cls.includes("factor")) {
        const levels = strs(attr(v, "levels")) ?? [];
        return v.value.map((i) => (i === null ? null : levels[i - 1] ?? null));
      }
      if (cls.includes("Date")) return v.value.map((d) => (d === null ? null : new Date(d * 86400000)));
      if (cls.includes("POSIXct")) return v.value.map((s) => (s === null ? null : new Date(s * 1000)));
      if (st.integers === "bigint") return v.value.map((i) => (i === null ? null : BigInt(i)));
      return v.value.slice();
    }
    case "double": {
      const xs = v.value.map(wireDouble);
      if (cls.includes("Date")) return xs.map((d) => (d === null || !isFinite(d) ? null : new Date(d * 86400000)));
      if (cls.includes("POSIXct")) return xs.map((s) => (s === null || !isFinite(s) ? null : new Date(s * 1000)));
      return xs;
    }
    case "complex":
      return v.value.map((c) => (c === null ? null : { re: wireDouble(c.re), im: wireDouble(c.im) }));
    case "list":
      return v.value.map((e) => dec(e, st, depth + 1));
  }
  return [];
}

// uniqueKeys makes R names usable as object keys: an empty or NA name is
// its 1-based position, a repeat gets ".1", ".2", ... (make.unique).
function uniqueKeys(names: readonly (string | null | undefined)[], n: number): string[] {
  const seen = new Map<string, number>();
  const taken = new Set<string>();
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = names[i];
    let key = name === null || name === undefined || name === "" ? String(i + 1) : name;
    if (taken.has(key)) {
      let k = seen.get(key) ?? 0;
      let cand: string;
      do {
        k++;
        cand = `${key}.${k}`;
      } while (taken.has(cand));
      seen.set(key, k);
      key = cand;
    }
    taken.add(key);
    keys.push(key);
  }
  return keys;
}

// keyed makes an object of values under R names, keeping the exact names
// on R_NAMES.
function keyed(names: (string | null)[], values: unknown[]): { [k: string]: unknown } {
  const keys = uniqueKeys(names, values.length);
  const obj = Object.fromEntries(keys.map((k, i) => [k, values[i]]));
  Object.defineProperty(obj, R_NAMES, { value: names.slice(0, values.length), enumerable: false });
  return obj;
}

// nest turns column-major elements with dims into nested arrays, the first
// index outermost (as jsonlite writes matrices).
function nest(xs: unknown[], dim: number[]): unknown {
  const rec = (k: number, offset: number, stride: number): unknown => {
    if (k === dim.length) return xs[offset];
    const out: unknown[] = [];
    for (let i = 0; i < dim[k]!; i++) out.push(rec(k + 1, offset + i * stride, stride * dim[k]!));
    return out;
  };
  return rec(0, 0, 1);
}

function dec(v: RValue, st: DecodeState, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new RangeError(`R value nested deeper than ${MAX_DEPTH} levels`);
  switch (v.type) {
    case "NULL":
      return null;
    case "json":
      return v.value;
    case "unsupported":
      return new RUnsupported(v.class ?? [], v.repr ?? "");
    case "symbol":
      return new RCode("symbol", v.value, v);
    case "language":
      return new RCode("language", v.repr ?? "", v);
    case "closure":
      return new RCode("closure", v.source ?? "", v);
    case "primitive":
      return new RCode("primitive", v.name, v);
    case "environment": {
      if (v.ref !== undefined) return st.envs.get(v.ref) ?? null;
      const obj: { [k: string]: unknown } = {};
      if (v.id !== undefined) st.envs.set(v.id, obj);
      (v.names ?? []).forEach((n, i) => {
        const b = v.values?.[i];
        Object.defineProperty(obj, n, {
          value: b === undefined ? null : dec(b, st, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      });
      return obj;
    }
    case "S4": {
      const obj: { [k: string]: unknown } = {};
      for (const [n, a] of Object.entries(v.attributes ?? {})) {
        if (n === "class") continue;
        Object.defineProperty(obj, n, { value: dec(a, st, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return obj;
    }
    case "raw":
      return new Uint8Array(Buffer.from(v.value, "base64"));
  }
  if (!("value" in v) || !Array.isArray(v.value)) return v; // a type this client does not know
  if (v.type === "list" && classes(v).includes("data.frame")) return dataFrame(v, st, depth);
  const xs = elements(v, st, depth);
  const dimV = attr(v, "dim");
  if (dimV && (dimV.type === "integer" || dimV.type === "double")) {
    const dim = dimV.value.map((d) => Number(wireDouble(d as WireDouble) ?? 0));
    if (dim.reduce((a, b) => a * b, 1) === xs.length && dim.length > 0) return nest(xs, dim);
  }
  const names = strs(attr(v, "names"));
  if (names) return keyed(names, xs);
  if (v.type !== "list" && xs.length === 1) return xs[0];
  return xs;
}

function dataFrame(v: Extract<RValue, { type: "list" }>, st: DecodeState, depth: number): DataFrame {
  const names = (strs(attr(v, "names")) ?? []).map((n, i) => (n === null || n === "" ? `V${i + 1}` : n));
  const cols = v.value.map((c) => {
    if (c.type === "list" && !classes(c).includes("data.frame")) return c.value.map((e) => dec(e, st, depth + 2));
    const d = c.type === "list" ? dataFrame(c, st, depth + 1) : elements(c, st, depth + 1);
    return Array.isArray(d) ? d : (d as DataFrame).rows();
  });
  const rn = attr(v, "row.names");
  let rowNames: string[] | null = null;
  if (rn && rn.type === "character") rowNames = rn.value.map((s) => s ?? "NA");
  const keys = uniqueKeys(names, cols.length);
  const obj = Object.fromEntries(keys.map((k, i) => [k, cols[i]!]));
  let nrow = cols.length ? cols[0]!.length : 0;
  if (!cols.length && rn) {
    // A frame without columns still has rows: compact c(NA, -n) or explicit.
    if (rn.type === "integer") nrow = rn.value.length === 2 && rn.value[0] === null ? Math.abs(rn.value[1] ?? 0) : rn.value.length;
    if (rn.type === "character") nrow = rn.value.length;
  }
  return new DataFrame(obj, rowNames, names, nrow);
}

// ---- encoding ---------------------------------------------------------------

function chr(xs: (string | null)[]): RValue {
  for (const s of xs) {
    if (s !== null && s.includes("\u0000")) {
      throw new TypeError("R strings cannot hold NUL (\\u0000): send bytes as a Uint8Array (raw) instead");
    }
  }
  return { type: "character", value: xs };
}

// dbl writes a double for the wire: NA is "NA" there (the server refuses null in a double vector).
function dbl(x: number | null): WireDouble {
  if (x === null) return "NA";
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Inf";
  if (x === -Infinity) return "-Inf";
  return x;
}

function int(x: bigint | number | null): number | null {
  if (x === null) return null;
  const n = Number(x);
  if (!Number.isInteger(n) || n <= -2147483648 || n > 2147483647) {
    throw new RangeError(`${String(x)} is not an R integer (|x| < 2^31, and -2^31 is NA)`);
  }
  return n;
}

function withAttrs(v: RValue, attributes: RAttributes): RValue {
  return { ...v, attributes: { ...("attributes" in v ? v.attributes : {}), ...attributes } } as RValue;
}

const posixctClass: RAttributes = {
  class: { type: "character", value: ["POSIXct", "POSIXt"] },
  tzone: { type: "character", value: ["UTC"] },
};

function time(d: Date | null): number | null {
  if (d === null) return null;
  const t = d.getTime();
  return Number.isNaN(t) ? null : t / 1000;
}

type Kind = "logical" | "double" | "integer" | "character" | "date" | "list";

// vectorKind says which atomic vector an array's elements make, nulls being NA.
function vectorKind(xs: readonly unknown[]): Kind {
  let kind: Kind | undefined;
  for (const x of xs) {
    if (x === null || x === undefined) continue;
    let k: Kind;
    switch (typeof x) {
      case "boolean":
        k = "logical";
        break;
      case "number":
        k = "double";
        break;
      case "bigint":
        k = "integer";
        break;
      case "string":
        k = "character";
        break;
      default:
        k = x instanceof Date ? "date" : "list";
    }
    if (kind === undefined) kind = k;
    else if (kind !== k) {
      if ((kind === "double" && k === "integer") || (kind === "integer" && k === "double")) kind = "double";
      else return "list";
    }
    if (kind === "list") return "list";
  }
  if (kind === undefined) return xs.length ? "logical" : "list";
  return kind;
}

function vector(xs: readonly unknown[], depth: number): RValue {
  const n = (x: unknown) => (x === undefined ? null : x);
  switch (vectorKind(xs)) {
    case "logical":
      return { type: "logical", value: xs.map((x) => n(x) as boolean | null) };
    case "double":
      return { type: "double", value: xs.map((x) => dbl(x === null || x === undefined ? null : Number(x))) };
    case "integer":
      return { type: "integer", value: xs.map((x) => int(n(x) as bigint | null)) };
    case "character":
      return chr(xs.map((x) => n(x) as string | null));
    case "date":
      return withAttrs({ type: "double", value: xs.map((x) => dbl(time(n(x) as Date | null))) }, posixctClass);
    default:
      return { type: "list", value: xs.map((x) => enc(x, depth + 1)) };
  }
}

/**
 * Encode a JavaScript value as a typed R value (for tool answers):
 *
 * - `null`/`undefined` -> NULL; a boolean -> logical; a number -> double
 *   (NaN, ±Infinity kept); a bigint -> integer; a string -> character; a
 *   Date -> POSIXct (UTC); a Uint8Array -> raw.
 * - An array of one kind of scalar (nulls are NA) -> that atomic vector
 *   (numbers with bigints -> double); an array of nulls -> logical NA; any
 *   other array (mixed, objects, empty) -> an unnamed list.
 * - A plain object or Map -> a named list; a DataFrame -> a data frame; a
 *   Factor -> a factor; RCode -> the code it came as.
 * - R.integer(), R.double(), R.date(), R.typed() and the others say
 *   exactly what to send.
 *
 * A function, a symbol, a string holding NUL or a cycle throws.
 */
export function encode(x: unknown): RValue {
  return enc(x, 1);
}

function enc(x: unknown, depth: number): RValue {
  if (depth > MAX_DEPTH) throw new RangeError(`value nested deeper than ${MAX_DEPTH} levels (a cycle?)`);
  if (x === null || x === undefined) return { type: "NULL" };
  switch (typeof x) {
    case "boolean":
      return { type: "logical", value: [x] };
    case "number":
      return { type: "double", value: [dbl(x)] };
    case "bigint":
      return { type: "integer", value: [int(x)] };
    case "string":
      return chr([x]);
    case "function":
    case "symbol":
      throw new TypeError(`a ${typeof x} cannot be sent to R`);
  }
  if (x instanceof Typed) return x.value;
  if (x instanceof RCode) return x.typed;
  if (x instanceof Date) return withAttrs({ type: "double", value: [dbl(time(x))] }, posixctClass);
  if (x instanceof Uint8Array) return { type: "raw", value: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64") };
  if (x instanceof Factor) return factor(x);
  if (x instanceof DataFrame) return encDataFrame(x, depth);
  if (Array.isArray(x)) return vector(x, depth);
  if (x instanceof Map) {
    const keys = [...x.keys()].map(String);
    return withAttrs({ type: "list", value: [...x.values()].map((e) => enc(e, depth + 1)) }, { names: chr(keys) });
  }
  if (x instanceof RUnsupported) throw new TypeError("a value R could not send cannot be sent back");
  const obj = x as { [k: string]: unknown };
  const keys = Object.keys(obj);
  return withAttrs({ type: "list", value: keys.map((k) => enc(obj[k], depth + 1)) }, { names: chr(keys) });
}

function factor(f: Factor): RValue {
  const idx = new Map(f.levels.map((l, i) => [l, i + 1]));
  return {
    type: "integer",
    value: f.values.map((v) => (v === null ? null : idx.get(v)!)),
    attributes: { levels: chr(f.levels), class: { type: "character", value: ["factor"] } },
  };
}

function encDataFrame(df: DataFrame, depth: number): RValue {
  const keys = Object.keys(df.columns);
  const cols = keys.map((k) => {
    const c = df.columns[k]!;
    if (c instanceof Factor) return factor(c);
    const kind = vectorKind(c);
    return kind === "list" ? { type: "list", value: c.map((e) => enc(e, depth + 2)) } as RValue : vector(c, depth + 1);
  });
  return {
    type: "list",
    value: cols,
    attributes: {
      names: chr(df.names.length === keys.length ? df.names : keys),
      class: { type: "character", value: ["data.frame"] },
      "row.names": df.rowNames ? chr(df.rowNames) : { type: "integer", value: [null, -df.nrow] },
    },
  };
}

/** Constructors for exact R values (for tool answers). */
export const R = {
  /** An integer vector (NA as null). */
  integer(xs: readonly (number | bigint | null)[] | number | bigint): Typed {
    const a = Array.isArray(xs) ? xs : [xs as number | bigint];
    return new Typed({ type: "integer", value: a.map((x) => int(x)) });
  },
  /** A double vector (NA as null). */
  double(xs: readonly (number | null)[] | number): Typed {
    const a = Array.isArray(xs) ? xs : [xs as number];
    return new Typed({ type: "double", value: a.map((x) => dbl(x)) });
  },
  /** A character vector (NA as null). */
  character(xs: readonly (string | null)[] | string): Typed {
    return new Typed(chr(Array.isArray(xs) ? [...xs] : [xs as string]));
  },
  /** A logical vector (NA as null). */
  logical(xs: readonly (boolean | null)[] | boolean): Typed {
    return new Typed({ type: "logical", value: Array.isArray(xs) ? [...xs] : [xs as boolean] });
  },
  /** A list (names from an object's keys), never simplified to a vector. */
  list(xs: readonly unknown[] | { [k: string]: unknown }): Typed {
    if (Array.isArray(xs)) return new Typed({ type: "list", value: xs.map((x) => encode(x)) });
    const obj = xs as { [k: string]: unknown };
    const keys = Object.keys(obj);
    return new Typed(withAttrs({ type: "list", value: keys.map((k) => encode(obj[k])) }, { names: chr(keys) }));
  },
  /** A Date vector (R's class Date: days, the time of day dropped). */
  date(xs: readonly (Date | null)[] | Date): Typed {
    const a = Array.isArray(xs) ? xs : [xs as Date];
    const days = a.map((d) => {
      const t = time(d);
      return dbl(t === null ? null : Math.floor(t / 86400));
    });
    return new Typed({ type: "double", value: days, attributes: { class: { type: "character", value: ["Date"] } } });
  },
  /** A factor (levels default to the sorted distinct values). */
  factor(values: readonly (string | null)[], levels?: string[]): Factor {
    return new Factor([...values], levels);
  },
  /** A data frame from columns of equal length. */
  dataFrame(columns: { [name: string]: unknown[] | Factor }, rowNames?: string[]): DataFrame {
    return new DataFrame(columns, rowNames ?? null);
  },
  /** Plain JSON that R simplifies as jsonlite::fromJSON would (the "json" type). */
  json(value: unknown): Typed {
    return new Typed({ type: "json", value });
  },
  /** A value already in the typed form, sent as it is. */
  typed(value: RValue): Typed {
    return new Typed(value);
  },
};

export type { Typed };
