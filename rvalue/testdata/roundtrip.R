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
  # Calls, functions, environments and S4 have their own plain form
  # (plain_test.go); jsonlite's is not the reference for them.
  code <- function(y) typeof(y) %in% c("symbol", "language", "closure", "builtin", "special", "environment", "S4") ||
    isS4(y) || (is.list(y) && any(vapply(y, code, NA))) || any(vapply(if (is.null(attributes(y))) list() else attributes(y), code, NA))
  plain <- if (code(x)) NULL else tryCatch(
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
  unsup_ptr = methods::new("externalptr"),
  unsup_in_list = list(p = methods::new("externalptr"), n = 1)
)

# Code, environments and S4: decoding builds new environments, so these are
# checked by behaviour rather than identical().
setClass("RtPoint", representation(x = "numeric", label = "character"))
setClass("RtGone", representation(v = "integer"))
cyc <- new.env()
assign("n", 2L, cyc)
assign("self", cyc, cyc)
local(get_n <- function() n, envir = cyc)
# Seven local environments, each holding the next: the sixth and seventh
# come without bindings. A binding over 1 MB is a placeholder.
deep_env <- new.env()
cur <- deep_env
for (i in 1:6) { nxt <- new.env(); assign("child", nxt, cur); assign("i", i, cur); cur <- nxt }
assign("big", runif(2e5), deep_env)
env_depth_ok <- function(o, b) {
  for (i in 1:5) {
    if (!identical(get("i", b), i)) return(FALSE)
    b <- get("child", b)
  }
  length(ls(b)) == 0L && identical(attr(b, "securer_dropped"), 2L)
}
fit <- lm(mpg ~ wt, data = mtcars)
gfit <- glm(am ~ wt, data = mtcars, family = binomial)
nd <- data.frame(wt = c(2.5, 3, 4.5))
# An S4 object whose class names a package the host has not loaded:
# decoding must not load it (getClassDef() with the package would).
tcltk_checked <- isNamespaceLoaded("tcltk") && stop("tcltk is loaded before the test")
elsewhere <- methods::new("RtPoint", x = 2, label = "q")
attr(elsewhere, "class") <- structure("RtNowhere", package = "tcltk")
code_cases <- list(
  code_fn = list(function(x, y = 2L, ...) x^y + length(list(...)),
                 function(o, b) identical(formals(b), formals(o)) && identical(body(b), body(o)) && b(3) == 9),
  code_fn_inner = list(function(a) vapply(a, function(i, k) i + 1, 0),
                       function(o, b) identical(b(1:3), c(2, 3, 4))),
  code_call = list(quote(x + 1), identical),
  code_call_named = list(quote(f(a = 1, b, c = "x")), identical),
  code_formula = list(y ~ x + log(z),
                      function(o, b) identical(b, o) && identical(environment(b), globalenv())),
  code_symbol = list(as.name("abc"), identical),
  code_sum = list(sum, identical),
  code_mean = list(mean, function(o, b) identical(b(c(1, 2, 6)), 3)),
  code_env_empty = list(new.env(), function(o, b) is.environment(b) && length(ls(b)) == 0L),
  code_env_cycle = list(cyc, function(o, b) is.environment(b) && identical(b$self, b) &&
                          identical(b$get_n(), 2L) && identical(environment(b$get_n), b)),
  code_env_deep = list(deep_env, function(o, b) env_depth_ok(o, b) && inherits(b$big, "securer_unsupported")),
  code_s4 = list(methods::new("RtPoint", x = 1.5, label = "p"), identical),
  code_s4_gone = list(methods::new("RtGone", v = 1:3),
                      function(o, b) inherits(b, "securer_s4") && identical(b$slots$v, 1:3)),
  code_s4_pkg = list(elsewhere, function(o, b) {
    # Only the first decode (R's own, before report()) can tell: report()'s
    # is.numeric() dispatches on the class and so loads the package.
    unloaded <- tcltk_checked || !isNamespaceLoaded("tcltk")
    tcltk_checked <<- TRUE
    unloaded && inherits(b, "securer_s4") && identical(b$slots$x, 2)
  }),
  code_s4_bit = list(asS4(structure(list(1), class = "x")), identical),
  code_lm = list(fit, function(o, b) identical(predict(b, nd), predict(o, nd)) &&
                   identical(predict(b, nd, interval = "confidence"), predict(o, nd, interval = "confidence"))),
  code_summary_lm = list(summary(fit), function(o, b) identical(coef(b), coef(o)) &&
                           identical(utils::capture.output(print(b)), utils::capture.output(print(o)))),
  code_glm = list(gfit, function(o, b) identical(predict(b, nd, type = "response"), predict(o, nd, type = "response")))
)
checkers <- list()
for (n in names(code_cases)) {
  cases[[n]] <- code_cases[[n]][[1]]
  checkers[[n]] <- code_cases[[n]][[2]]
}
same <- function(name, orig, back) {
  f <- checkers[[name]]
  if (is.null(f)) identical(back, orig) else isTRUE(f(orig, back))
}

wires <- character(length(cases))
for (i in seq_along(cases)) {
  name <- names(cases)[[i]]
  x <- cases[[i]]
  wire <- .securer_encode(x)
  if (!startsWith(name, "unsup_") && name != "code_s4_gone") {
    back <- .securer_decode(parse(wire))
    if (!same(name, x, back)) stop("R does not decode its own encoding of ", name, ": ", wire)
  }
  wires[[i]] <- wire
  report(name, x, wire)
}
cat("END\n")
flush(stdout())
# The host side of code_s4_gone does not know the class.
invisible(removeClass("RtGone"))

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
  got <- tryCatch(.securer_decode(parse(back[[i]])), error = function(e) e, warning = function(w) w)
  if (startsWith(name, "unsup_")) {
    # Go must pass the placeholder through unchanged; R decodes it into a
    # securer_unsupported placeholder (never an error).
    ph <- if (is.list(got) && !inherits(got, "securer_unsupported")) got[[1]] else got
    if (identical(parse(back[[i]]), parse(wires[[i]])) && inherits(ph, "securer_unsupported")) cat("OK", name, "\n")
    else cat("FAIL", name, ": unsupported value changed or not a placeholder:", back[[i]], "\n")
  } else if (inherits(got, "condition")) {
    cat("FAIL", name, ":", conditionMessage(got), "\n")
  } else if (!identical(parse(back[[i]]), parse(wires[[i]]))) {
    cat("FAIL", name, ": Go changed the wire form:", substr(back[[i]], 1, 500), "\n")
  } else if (!same(name, cases[[i]], got)) {
    cat("FAIL", name, ": not identical after Go:", substr(back[[i]], 1, 500), "\n")
  } else {
    cat("OK", name, "\n")
  }
}
cat("DONE\n")
