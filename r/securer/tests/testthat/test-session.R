test_that("a session keeps state, streams output and survives errors and timeouts", {
  s <- SecureSession$new(tools = seed_tools(), sandbox = TRUE)
  on.exit(s$close())
  expect_true(s$is_alive())
  s$execute("x <- 40")
  expect_equal(s$execute("x + add(1, 1)"), 42)
  lines <- character()
  v <- s$execute('for (i in 1:3) cat("line", i, "\\n"); "done"', output_handler = function(l) lines <<- c(lines, l))
  # The handler sees everything as it is written, the value's auto-print
  # included; the output attribute leaves the value out.
  expect_equal(lines, c("line 1 ", "line 2 ", "line 3 ", "[1] \"done\""))
  expect_equal(attr(v, "output"), c("line 1 ", "line 2 ", "line 3 "))
  expect_error(s$execute('stop("inner boom")'), "inner boom")
  expect_error(s$execute("Sys.sleep(10)", timeout = 1), "Execution timed out after 1 second\\(s\\)")
  expect_equal(s$execute("x"), 40) # still usable, state kept
  expect_error(s$execute("1 +"), "syntax error")
  expect_equal(s$execute("x"), 40)
  s$restart()
  expect_false(s$execute('exists("x")'))
  expect_equal(s$tools()[[1]]$name, "add")
  expect_equal(s$tools()[[1]]$args, c(a = "numeric", b = "numeric"))
  expect_output(print(s), "<SecureSession> \\[running\\]")
  s$close()
  expect_false(s$is_alive())
  expect_error(s$execute("1"), "Session is not running.", fixed = TRUE)
})

test_that("hooks and budgets", {
  s <- SecureSession$new(tools = seed_tools(), sandbox = TRUE,
                         pre_execute_hook = function(code) !grepl("forbidden", code))
  on.exit(s$close())
  expect_error(s$execute("forbidden <- 1"), "blocked by pre_execute_hook")
  expect_error(s$execute(strrep("1;", 100)), NA)
  expect_error(s$execute("1", max_code_length = 0), "Code too long")
  expect_error(s$execute("for (i in 1:5) add(i, 1)", max_tool_calls = 3), "Maximum tool calls \\(3\\) exceeded")
  v <- s$execute('for (i in 1:10) cat(i, "\\n"); 1', max_output_lines = 2)
  expect_equal(length(attr(v, "output")), 2)
})

test_that("with_secure_session closes its session", {
  kept <- NULL
  v <- with_secure_session(function(s) {
    kept <<- s
    s$execute("add(20, 22)")
  }, tools = seed_tools())
  expect_equal(v, 42)
  expect_false(kept$is_alive())
})

test_that("limits reach the container", {
  s <- SecureSession$new(sandbox = TRUE, limits = list(memory = 128 * 1024^2, nproc = 16))
  on.exit(s$close())
  expect_error(s$execute("x <- rep(1, 2^26)"))
  expect_equal(default_limits(), list(cpu = 60, memory = 512 * 1024^2, fsize = 50 * 1024^2, nproc = 50, nofile = 256))
  expect_error(SecureSession$new(sandbox = TRUE, limits = list(disk = 1)), "Unknown limits: disk")
})

test_that("sandbox = FALSE runs R on this host, and says so", {
  assign("unsandboxed", FALSE, envir = securer:::.securer_said)
  expect_message(s <- SecureSession$new(tools = seed_tools()), "no isolation")
  on.exit(s$close())
  # Said once per R process, not at every session.
  expect_silent(execute_r("1", sandbox = FALSE))
  expect_output(print(s), "sandbox: NONE")
  expect_equal(s$execute("add(2, 3)"), 5)
  expect_equal(s$execute("Sys.info()[['nodename']]"), Sys.info()[["nodename"]])
  expect_false(identical(s$execute("Sys.info()[['nodename']]"), "sandbox"))
  s$execute("kept <- 1:3")
  expect_identical(s$execute("kept"), 1:3)
  expect_identical(s$execute("list(a = NA_integer_, f = factor('x'))"), list(a = NA_integer_, f = factor("x")))
  expect_error(s$execute("Sys.sleep(10)", timeout = 1), "Execution timed out after 1 second")
  expect_identical(s$execute("kept"), 1:3)
  expect_error(s$execute("stop('inner problem')"), "inner problem")
  expect_error(s$execute("x <- numeric(1e9)"), "cannot allocate")
  s$restart()
  expect_false(s$execute("exists('kept')"))
  expect_equal(execute_r("1 + 1", sandbox = FALSE), 2)
  expect_error(SecureSession$new(sandbox = NA), "TRUE or FALSE")
})

test_that("sandbox = TRUE refuses a server that runs without the sandbox", {
  old <- options(securer.serve_args = paste(Sys.getenv("SECURER_SERVE_ARGS"), "--unsafe-no-sandbox"))
  on.exit(options(old))
  expect_error(SecureSession$new(sandbox = TRUE), "refusing, since sandbox = TRUE was asked")
})
