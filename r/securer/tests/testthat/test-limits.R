# limits$cpu is the session's (or pool's) default wall-clock timeout: it
# applies when execute() is given timeout = NULL, and a timeout's message
# names the timeout that applied (the README's claim).
test_that("limits$cpu is the default timeout when execute() has none", {
  s <- SecureSession$new(sandbox = TRUE, limits = list(cpu = 1))
  on.exit(s$close())
  expect_error(s$execute("Sys.sleep(10)", timeout = NULL), "Execution timed out after 1 second\\(s\\)")
  # Without a timeout given, limits$cpu applies too (not execute()'s 30 s).
  expect_error(s$execute("Sys.sleep(10)"), "Execution timed out after 1 second\\(s\\)")
  # A timeout given wins.
  expect_equal(s$execute("Sys.sleep(2); 'slept'", timeout = 30), "slept")
  expect_error(s$execute("Sys.sleep(10)", timeout = 1.5), "Execution timed out after 1.5 second\\(s\\)")
})

test_that("a pool's limits$cpu is its default timeout", {
  p <- SecureSessionPool$new(size = 1, limits = list(cpu = 1))
  on.exit(p$close())
  expect_error(p$execute("Sys.sleep(10)"), "Execution timed out after 1 second\\(s\\)")
  expect_equal(p$execute("2 * 21"), 42)
})

# With the tool alarm turned off (README: options(securer.tool_alarm =
# FALSE)), a tool function runs in this R to its end; the timeout is raised
# after it, and its late answer does not disturb the session. With the
# alarm on (the default), test-tools14.R checks the cut at the timeout.
test_that("with the tool alarm off, a tool function runs to its end past the timeout", {
  old <- options(securer.tool_alarm = FALSE)
  on.exit(options(old), add = TRUE)
  slow <- securer_tool("slow", "Sleep, then answer", fn = function(s) { Sys.sleep(s); "woke" },
                       args = list(s = "numeric"))
  s <- SecureSession$new(tools = list(slow), sandbox = TRUE)
  on.exit(s$close(), add = TRUE)
  t0 <- Sys.time()
  expect_error(s$execute("slow(3)", timeout = 1), "Execution timed out after 1 second\\(s\\)")
  expect_gte(as.numeric(Sys.time() - t0, units = "secs"), 3)
  expect_equal(s$execute("1 + 1"), 2)
})
