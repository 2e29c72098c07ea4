# Issue 14: a tool answered here (this R process is single-threaded) does
# not hold an execution past its timeout: it is abandoned at the deadline,
# execute() fails at the timeout as it always did, and the audit log says
# so.

test_that("a tool sleeping past the timeout is cut at the timeout", {
  audit <- tempfile("audit-", fileext = ".jsonl")
  slept <- FALSE
  sleepy <- securer_tool("sleepy", "Sleeps 5 s", fn = function() {
    Sys.sleep(5)
    slept <<- TRUE
    "late"
  })
  session <- SecureSession$new(tools = list(sleepy), sandbox = TRUE, audit_log = audit)
  on.exit(session$close())
  t0 <- Sys.time()
  err <- tryCatch(session$execute("sleepy()", timeout = 2), error = function(e) e)
  took <- as.numeric(Sys.time() - t0, units = "secs")
  message(sprintf("tool Sys.sleep(5) under timeout 2: execute() failed after %.2f s", took))
  expect_s3_class(err, "securer_timeout")
  expect_match(conditionMessage(err), "Execution timed out after 2 second")
  expect_lt(took, 4)
  expect_gte(took, 1.9)
  expect_false(slept)
  # The audit log: the call, its cancellation, the timeout.
  recs <- lapply(readLines(audit), jsonlite::fromJSON)
  events <- vapply(recs, function(r) r$event, "")
  expect_equal(events[events != "session_start"][1:4], c("execute_start", "tool_call", "tool_cancelled", "execute_error"))
  cancelled <- recs[[which(events == "tool_cancelled")]]
  expect_equal(cancelled$tool, "sleepy")
  expect_equal(cancelled$reason, "timeout")
  expect_match(recs[[which(events == "execute_error")]]$error, "timed out")
  # The session and its tools still work, and no interrupt comes later.
  expect_equal(session$execute("1 + 1"), 2)
  Sys.sleep(0.5)
  expect_equal(session$execute("2 + 2"), 4)
})

test_that("tools that finish in time answer as before, with no interrupt afterwards", {
  calls <- 0L
  add <- securer_tool("add", "Add", fn = function(a, b) {
    calls <<- calls + 1L
    a + b
  }, args = list(a = "numeric", b = "numeric"))
  nap <- securer_tool("nap", "Sleeps a little", fn = function(s) {
    Sys.sleep(s)
    "rested"
  }, args = list(s = "numeric"))
  session <- SecureSession$new(tools = list(add, nap), sandbox = TRUE)
  on.exit(session$close())
  expect_equal(session$execute("sum(vapply(1:50, function(i) add(i, 1), 0))", timeout = 3), sum(2:51))
  expect_equal(calls, 50L)
  # A tool done just before the deadline: its answer is taken.
  expect_equal(session$execute("nap(0.5)", timeout = 2), "rested")
  # The alarm of that call must not fire once the tool is over: R here
  # sleeps past the old deadline undisturbed.
  t0 <- Sys.time()
  Sys.sleep(2)
  expect_gte(as.numeric(Sys.time() - t0, units = "secs"), 1.9)
})

test_that("a busy tool is cut too, and the user's error handlers in the tool do not stop it", {
  busy <- securer_tool("busy", "Spins", fn = function() {
    tryCatch({
      x <- 0
      repeat x <- x + 1
    }, error = function(e) "swallowed")
  })
  session <- SecureSession$new(tools = list(busy), sandbox = TRUE)
  on.exit(session$close())
  t0 <- Sys.time()
  err <- tryCatch(session$execute("busy()", timeout = 1.5), error = function(e) e)
  took <- as.numeric(Sys.time() - t0, units = "secs")
  expect_s3_class(err, "securer_timeout")
  expect_lt(took, 3.5)
})

test_that("a pool's tool is cut at the timeout", {
  sleepy <- securer_tool("sleepy", "Sleeps 5 s", fn = function() {
    Sys.sleep(5)
    "late"
  })
  pool <- SecureSessionPool$new(size = 1, tools = list(sleepy), sandbox = TRUE)
  on.exit(pool$close())
  t0 <- Sys.time()
  err <- tryCatch(pool$execute("sleepy()", timeout = 2), error = function(e) e)
  took <- as.numeric(Sys.time() - t0, units = "secs")
  expect_s3_class(err, "securer_timeout")
  expect_lt(took, 4)
  expect_equal(pool$execute("1 + 1"), 2)
})

test_that("an interrupt of the user's in a tool stays an interrupt, and the alarm is disarmed", {
  selfint <- securer_tool("selfint", "Interrupts this R process, as Ctrl-C does", fn = function() {
    tools::pskill(Sys.getpid(), tools::SIGINT)
    Sys.sleep(3)
    "not interrupted"
  })
  session <- SecureSession$new(tools = list(selfint), sandbox = TRUE)
  on.exit(session$close())
  got <- tryCatch(session$execute("selfint()", timeout = 2.5), interrupt = function(c) "interrupted")
  expect_equal(got, "interrupted")
  # No SIGINT at the old deadline, 2.5 s after the execute.
  got <- tryCatch({
    Sys.sleep(3)
    "quiet"
  }, interrupt = function(c) "a late SIGINT")
  expect_equal(got, "quiet")
  expect_equal(session$execute("1 + 1"), 2)
})
