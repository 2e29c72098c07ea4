# Issue 13, "Output is never lost" and "Plots come back" (R package side).
# The first tests feed .securer_outcome() results shaped as the protocol's
# `result` (PROTOCOL.md; printed_bytes, error.traceback, displays); the
# last ones run against the server.

ev <- function(stream, text) list(stream = stream, text = text)
typed <- function(v) jsonlite::fromJSON(securer:::.securer_encode(v), simplifyVector = FALSE)
ok_result <- function(value, printed = NULL, printed_bytes = NULL, ...) {
  list(verdict = "ok", value = typed(value), visible = TRUE,
       printed = printed, printed_bytes = printed_bytes, ...)
}
outcome <- function(r, events) securer:::.securer_outcome(list(result = r, events = events), 30, NULL, FALSE)

test_that("output is never lost: printed_bytes strips the auto-print from the end of stdout only", {
  # A visible value followed by its warning on stderr: the value's print is
  # not the tail of the merged output, it is the tail of stdout.
  r <- ok_result(c(1L, NA), printed = "[1]  1 NA", printed_bytes = 10)
  out <- outcome(r, list(ev("stdout", "before\n"), ev("stdout", "[1]  1 NA\n"),
                         ev("stderr", "Warning message:\nNAs introduced by coercion \n")))
  expect_identical(out$output, c("before", "Warning message:", "NAs introduced by coercion "))
  expect_identical(attr(out$value, "output"), out$output)
})

test_that("output is never lost: a large value's print (clipped in `printed`) leaves no output", {
  rows <- paste0(format(1:20000), " ", 1:20000)
  text <- paste0(c("      a", rows), "\n", collapse = "")
  r <- ok_result(1:3, printed = substr(text, 1, 65536), printed_bytes = nchar(text, "bytes"))
  # The stream arrives in pieces, the print spread over several events.
  pieces <- substring(text, seq(1, nchar(text), 50000), pmin(seq(1, nchar(text), 50000) + 49999, nchar(text)))
  out <- outcome(r, c(list(ev("stdout", "x\n")), lapply(pieces, function(p) ev("stdout", p))))
  expect_identical(out$output, "x")
})

test_that("output is never lost: without printed_bytes, the printed text is matched at the end of stdout", {
  r <- ok_result("done", printed = '[1] "done"')
  out <- outcome(r, list(ev("stdout", "line 1\n[1] \"done\"\n"), ev("stderr", "note\n")))
  expect_identical(out$output, c("line 1", "note"))
})

test_that("output is never lost: a multi-byte print is stripped by bytes", {
  r <- ok_result("\u00e9t\u00e9", printed = '[1] "\u00e9t\u00e9"', printed_bytes = nchar('[1] "\u00e9t\u00e9"\n', "bytes"))
  out <- outcome(r, list(ev("stdout", "caf\u00e9\n"), ev("stdout", '[1] "\u00e9t\u00e9"\n')))
  expect_identical(out$output, "caf\u00e9")
})

test_that("output is never lost: an error carries the output, the traceback and the box's classes", {
  r <- list(verdict = "error", visible = FALSE,
            error = list(message = "bad: 1", call = "f(1)", class = list("my_error", "simpleError", "error", "condition"),
                         traceback = list("g()", "f(1)", "stop(\"bad: \", x)")))
  out <- outcome(r, list(ev("stdout", "before\n"), ev("stderr", "Error in f(1) : bad: 1\n")))
  e <- tryCatch(securer:::.securer_deliver(out, FALSE), error = function(e) e)
  expect_identical(class(e), c("securer_execution_error", "my_error", "simpleError", "error", "condition"))
  expect_identical(conditionMessage(e), "bad: 1")
  expect_identical(e$output, c("before", "Error in f(1) : bad: 1"))
  expect_identical(e$traceback, c("g()", "f(1)", "stop(\"bad: \", x)"))
  expect_identical(e$call, "f(1)")
})

test_that("output is never lost: a NULL value's output goes to the console without a handler", {
  r <- list(verdict = "ok", value = typed(NULL), visible = FALSE)
  out <- outcome(r, list(ev("stdout", "hello\n")))
  expect_output(v <- securer:::.securer_deliver(out, FALSE), "^hello$")
  expect_null(v)
  expect_silent(securer:::.securer_deliver(out, TRUE))
})

test_that("plots come back: displays become attr(value, 'plots'), raw PNG of class securer_plot", {
  png <- as.raw(c(0x89, 0x50, 0x4e, 0x47, 1, 2, 3))
  r <- ok_result(1, printed = "[1] 1", printed_bytes = 6,
                 displays = list(list(data = list(`image/png` = jsonlite::base64_enc(png)),
                                      metadata = list(width = 768, height = 576, dpi = 96))))
  out <- outcome(r, list(ev("stdout", "[1] 1\n")))
  p <- attr(out$value, "plots")
  expect_length(p, 1)
  expect_s3_class(p[[1]], "securer_plot")
  expect_identical(unclass(p[[1]])[seq_along(png)], png)
  expect_output(print(p[[1]]), "<securer_plot> PNG 768x576 px, 7 bytes")
  # A NULL value cannot carry them: they are printed with its output.
  r$value <- typed(NULL)
  out <- outcome(r, list())
  expect_output(securer:::.securer_deliver(out, FALSE), "securer_plot")
})

test_that("output is never lost: against the server, NULL values, errors, last_output()", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  expect_output(v <- s$execute('cat("hello\\n"); NULL'), "hello")
  expect_null(v)
  expect_identical(s$last_output(), "hello")
  lines <- character()
  expect_silent(s$execute('for (i in 1:2) cat("n", i, "\\n")', output_handler = function(l) lines <<- c(lines, l)))
  expect_identical(lines, c("n 1 ", "n 2 "))
  expect_identical(s$last_output(), c("n 1 ", "n 2 "))
  e <- tryCatch(s$execute('cat("before\\n"); stop("boom")'), error = function(e) e)
  expect_s3_class(e, "securer_execution_error")
  expect_identical(conditionMessage(e), "boom")
  expect_true("before" %in% e$output)
  expect_identical(s$last_output(), e$output)
  v <- s$execute('as.integer(c("1", "b"))')
  expect_false(any(grepl("[1]  1 NA", attr(v, "output"), fixed = TRUE)))
})

test_that("output is never lost: a 20,000-row data frame leaves no output", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  v <- s$execute("x <- data.frame(a = 1:20000); x")
  expect_equal(nrow(v), 20000)
  expect_length(attr(v, "output"), 0)
})

test_that("output is never lost: an R error carries its traceback", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  e <- tryCatch(s$execute('f <- function() stop("x"); g <- function() f(); g()'), error = function(e) e)
  expect_true(all(c("g()", "f()") %in% e$traceback), info = paste(e$traceback, collapse = " | "))
})

test_that("plots come back: plot(1:10) arrives as a PNG", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  v <- s$execute("plot(1:10); 1")
  p <- attr(v, "plots")
  expect_length(p, 1)
  expect_identical(unclass(p[[1]])[1:4], as.raw(c(0x89, 0x50, 0x4e, 0x47)))
})

test_that("plots come back from a pool: plot(1:10)'s PNG in $last_plots()", {
  p <- SecureSessionPool$new(size = 1)
  on.exit(p$close())
  expect_output(v <- p$execute("plot(1:10)"), "securer_plot")
  expect_null(v)
  pl <- p$last_plots()
  expect_length(pl, 1)
  expect_identical(unclass(pl[[1]])[1:4], as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  p$execute("1")
  expect_null(p$last_plots())
})

test_that("a one-shot execute_r()'s plot is kept: last_plots() and last_output()", {
  expect_output(v <- execute_r('cat("drawn\\n"); plot(1:10)'), "securer_plot")
  expect_null(v)
  pl <- last_plots()
  expect_length(pl, 1)
  expect_identical(unclass(pl[[1]])[1:4], as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  expect_identical(last_output(), "drawn")
  expect_error(execute_r('cat("before\\n"); stop("boom")'), "boom")
  expect_null(last_plots())
  expect_true("before" %in% last_output())
})
