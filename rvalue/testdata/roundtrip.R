# Driver for rroundtrip_test.go. Usage:
#   Rscript roundtrip.R go <values.R> <cases.jsonl>
#     Each line of cases.jsonl is a wire value made by Go. Decode it,
#     re-encode it, and print one report line per case.
#   Rscript roundtrip.R r <values.R>
#     Build values in R, check that R decodes its own encoding to an
#     identical() value, print one report line per case then "END"; read
#     Go's re-marshalled values back from stdin (one line per case) and
#     print "OK <name>" or "FAIL <name>: <why>" for each, then "DONE".
# A report line is {"name":..,"wire":<value>,"plain":<jsonlite text>,"checks":{..}},
# with "plainErr":true when jsonlite::toJSON itself fails on the value.

args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
source(args[[2]])

report <- function(name, x, wire) {
  plain <- tryCatch(
    as.character(jsonlite::toJSON(x, auto_unbox = TRUE, dataframe = "rows", na = "null",
                                  factor = "string", Date = "ISO8601", POSIXt = "ISO8601",
                                  digits = NA)),
    error = function(e) NULL)
  plain <- if (is.null(plain)) "null,\"plainErr\":true" else plain
  checks <- c(numeric = is.numeric(x), character = is.character(x), logical = is.logical(x),
              integer = is.integer(x), list = is.list(x), data.frame = is.data.frame(x))
  checks <- paste0("{", paste0("\"", names(checks), "\":", tolower(checks), collapse = ","), "}")
  cat(paste0("{\"name\":\"", name, "\",\"wire\":", wire, ",\"plain\":", plain,
             ",\"checks\":", checks, "}\n"))
}

parse <- function(txt) jsonlite::fromJSON(txt, simplifyVector = FALSE)

if (mode == "go") {
  lines <- readLines(args[[3]], encoding = "UTF-8")
  for (i in seq_along(lines)) {
    res <- tryCatch({
      x <- .securer_decode(parse(lines[[i]]))
      list(x = x, wire = .securer_encode(x))
    }, error = function(e) {
      cat(sprintf("{\"name\":\"%d\",\"error\":%s}\n", i, .securer_json_str(conditionMessage(e))))
      NULL
    })
    if (!is.null(res)) report(as.character(i), res$x, res$wire)
  }
  quit(status = 0)
}

deep <- NULL
for (i in 1:99) deep <- list(deep)
cases <- list(
  int = 1L,
  int_vec = c(1L, NA, -3L, .Machine$integer.max, -.Machine$integer.max),
  dbl = 1,
  dbl_specials = c(1.5, NA, NaN, Inf, -Inf),
  neg_zero = -0,
  tiny = 1e-300,
  denormal = 5e-324,
  xmax = .Machine$double.xmax,
  point3 = 0.1 + 0.2,
  thirds = (1:20) / 3,
  lgl = c(TRUE, NA, FALSE),
  na_lgl = NA,
  na_int = NA_integer_,
  na_real = NA_real_,
  na_chr = NA_character_,
  null = NULL,
  utf8 = "h\u00e9llo \u2603 \u65e5\u672c",
  emoji = c("\U0001F600", "\u2028", NA),
  escapes = "q\"\\\n\t\u0001/",
  latin1 = iconv("caf\u00e9", "UTF-8", "latin1"),
  empty_lgl = logical(0), empty_int = integer(0), empty_dbl = double(0),
  empty_chr = character(0), empty_list = list(), empty_raw = raw(0),
  empty_cplx = complex(0), empty_named_list = setNames(list(), character(0)),
  named_list = list(a = 1, b = "x", c = NULL),
  unnamed_list = list(1, "a", NULL, TRUE),
  partly_named = list(a = 1, 2),
  nested = list(a = list(b = list(c = 1:3, d = list()))),
  df = data.frame(n = 1:3, x = c(1.5, NA, 3), s = c("a", NA, "c"),
                  f = factor(c("u", "v", "u")), d = as.Date("2024-01-01") + 0:2,
                  stringsAsFactors = FALSE),
  df_empty = data.frame(),
  df_zero_rows = data.frame(a = integer(0), b = character(0)),
  df_rownames = data.frame(a = 1:2, row.names = c("r1", "r2")),
  df_one_row = data.frame(a = 1L, b = "z"),
  mtcars = head(mtcars),
  iris = head(iris),
  factor = factor(c("lo", "hi", NA, "lo"), levels = c("lo", "hi")),
  ordered = factor(c("s", "m"), levels = c("s", "m", "l"), ordered = TRUE),
  date = as.Date("2024-02-29"),
  dates = as.Date(c("1969-12-31", NA, "2038-01-19")),
  posixct = as.POSIXct("2024-03-10 12:34:56", tz = "America/New_York"),
  posixct_utc = as.POSIXct(c("2000-01-01 00:00:00", "2020-06-01 23:59:59"), tz = "UTC"),
  difftime = as.difftime(c(1.5, 2), units = "hours"),
  matrix = matrix(1:6, 2),
  matrix_1x1 = matrix(2.5, 1, 1),
  matrix_dimnames = matrix(c(1.5, 2, 3, 4), 2, dimnames = list(c("r1", "r2"), c("a", "b"))),
  array3 = array(1:24, 2:4),
  named_vec = c(a = 1, b = 2),
  na_names = setNames(1:2, c("a", NA)),
  raw = as.raw(c(0, 1, 127, 255)),
  raw_long = as.raw(rep(0:255, 3)),
  complex = c(1 + 2i, NA, complex(real = NaN, imaginary = -Inf), -1.5 - 0i),
  custom_attrs = structure(1:3, foo = "bar", baz = list(1, "x"), class = "myclass"),
  deep = deep,
  big = runif(1e5),
  unsup_fn = function(x) x + 1,
  unsup_in_list = list(f = sum, e = globalenv(), n = 1)
)

wires <- character(length(cases))
for (i in seq_along(cases)) {
  name <- names(cases)[[i]]
  x <- cases[[i]]
  wire <- .securer_encode(x)
  if (!startsWith(name, "unsup_")) {
    back <- .securer_decode(parse(wire))
    if (!identical(back, x)) stop("R does not decode its own encoding of ", name, ": ", wire)
  }
  wires[[i]] <- wire
  report(name, x, wire)
}
cat("END\n")
flush(stdout())

con <- file("stdin")
open(con)
back <- readLines(con, n = length(cases), encoding = "UTF-8")
close(con)
for (i in seq_along(cases)) {
  name <- names(cases)[[i]]
  if (i > length(back)) {
    cat("FAIL", name, ": no reply from Go\n")
    next
  }
  got <- tryCatch(.securer_decode(parse(back[[i]])), error = function(e) e)
  if (startsWith(name, "unsup_")) {
    # Go must pass the placeholder through unchanged; R refuses to decode it
    # (or the list holding it).
    if (identical(parse(back[[i]]), parse(wires[[i]])) && inherits(got, "error")) cat("OK", name, "\n")
    else cat("FAIL", name, ": unsupported value changed or decoded:", back[[i]], "\n")
  } else if (inherits(got, "error")) {
    cat("FAIL", name, ":", conditionMessage(got), "\n")
  } else if (!identical(got, cases[[i]])) {
    cat("FAIL", name, ": not identical after Go:", substr(back[[i]], 1, 500), "\n")
  } else {
    cat("OK", name, "\n")
  }
}
cat("DONE\n")
