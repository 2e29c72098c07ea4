# The codec's fast paths (.securer_encode_plain, .securer_decode_plain)
# against its general paths, over fixed edge cases and random plain
# values: the same bytes out, the same value back, or the fast path
# declines. Prints one line per mismatch and a summary line
# "checked N mismatches M fast F".
args <- commandArgs(trailingOnly = TRUE)
rt <- new.env()
sys.source(args[1], envir = rt)
set.seed(as.integer(args[2]))
general_enc <- function(x) rt$.securer_enc(x, 1L, rt$.securer_enc_state())
general_dec <- function(v) rt$.securer_dec(v, 1L, new.env(parent = emptyenv()))
vals <- list(0, -0, 1, -1, 0.1, 1/3, pi, 1e300, 1e-300, 5e-324, .Machine$double.xmax, 2^53, 2^53 + 2,
  123456789012345, 1234567890123456, 0.1 + 0.2, NaN, NA_real_, Inf, -Inf, c(1, NA), c(-0, 0),
  1L, NA_integer_, -2147483647L, 0L, integer(0), c(1L, 2L), 1:100, TRUE, FALSE, NA, logical(0), c(TRUE, NA),
  "", "abc", "a\"b", "a\\b", "a\nb", "a\tb", "\u00e9", "\u65e5\u672c", "a/b", "<>[]{}", "~", " ", "[", "]", "\\",
  "\x7f", character(0), c("a", "b"), c("a", NA), NA_character_, iconv("caf\xe9", "latin1", "UTF-8"),
  double(0), NULL, list(), list(1), factor("a"), c(a = 1), matrix(1:4, 2), as.raw(1), 1i, quote(x),
  structure(1, class = "foo"), Sys.Date())
for (i in 1:4000) {
  n <- sample(0:4, 1)
  vals[[length(vals) + 1L]] <- switch(sample(7, 1),
    rnorm(n) * 10^sample(-30:30, 1), sample(-1e9:1e9, n), sample(c(TRUE, FALSE, NA), n, TRUE),
    vapply(seq_len(n), function(i) intToUtf8(sample(c(1:127, 160:400, 0x4e00:0x4e10), sample(0:6, 1), TRUE)), ""),
    round(runif(n) * 1000, sample(0:3, 1)), sample(c(0, -0, 1, NaN, NA, Inf, -Inf, 2^60), n, TRUE),
    as.integer(sample(c(-3:3, NA), n, TRUE)))
}
bad <- 0L
fast <- 0L
show <- function(x) paste(deparse(x), collapse = " ")
for (x in vals) {
  want <- tryCatch(general_enc(x), error = function(e) NULL)
  got <- rt$.securer_encode_plain(x)
  if (!is.null(got)) {
    fast <- fast + 1L
    if (!identical(got, want)) {
      bad <- bad + 1L
      cat("encode", show(x), "fast", got, "general", if (is.null(want)) "(error)" else want, "\n")
    }
  }
  if (is.null(want)) next
  v <- jsonlite::fromJSON(want, simplifyVector = FALSE)
  back <- rt$.securer_decode_plain(v)
  if (!is.null(back) && !identical(back, general_dec(v))) {
    bad <- bad + 1L
    cat("decode", want, "fast", show(back), "general", show(general_dec(v)), "\n")
  }
}
# What tool calls carry most must take the fast paths.
for (x in list(1, 2.5, 1L, TRUE, "abc", c(1L, 2L), c("a", "b"))) {
  w <- rt$.securer_encode_plain(x)
  if (is.null(w) || is.null(rt$.securer_decode_plain(jsonlite::fromJSON(w, simplifyVector = FALSE)))) {
    bad <- bad + 1L
    cat("not fast:", show(x), "\n")
  }
}
cat("checked", length(vals), "mismatches", bad, "fast", fast, "\n")
