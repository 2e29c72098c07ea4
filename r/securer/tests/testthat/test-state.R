# Issue 10: lost state is never silent; a file over the size limit is an R
# error that keeps the session.

test_that("a result says when the session's R was replaced and its state lost", {
  s <- SecureSession$new(sandbox = TRUE, limits = list(memory = 128 * 1024^2))
  on.exit(s$close())
  s$execute("kept <- 42")
  expect_error(s$execute("x <- list(); for (i in 1:400) { v <- numeric(2e7); v[] <- i; x[[i]] <- v }"), "oom")
  expect_warning(gone <- s$execute('exists("kept")'), class = "securer_state_lost")
  expect_false(gone)
  # Reported once: the next execution runs in the same (new) R.
  s$execute("kept <- 1")
  expect_silent(s$execute("kept"))
})

test_that("a write over limits$fsize is an R error and the state stays", {
  s <- SecureSession$new(sandbox = TRUE, limits = list(fsize = 2 * 1024^2))
  on.exit(s$close())
  s$execute("kept <- 42")
  expect_error(s$execute('writeLines(strrep("x", 3e6), "/tmp/big.txt")'), "File too large")
  expect_equal(s$execute("kept"), 42)
})
