# Issue 13, "the securer 0.2.0 API at full fidelity": one test per item of
# the issue's list, named after it.

test_that("0.2.0 error texts: closed session, code too long, executions used up, syntax error, hook error", {
  s <- SecureSession$new(sandbox = TRUE, max_executions = 2,
                         pre_execute_hook = function(code) if (grepl("boom", code)) stop("hook failed") else TRUE)
  on.exit(s$close())
  expect_error(s$execute("1", max_code_length = 0), "Code too long")
  expect_error(s$execute("1 +"), "syntax error")
  expect_error(s$execute("boom"), "^pre_execute_hook error: hook failed$")
  expect_equal(s$execute("1"), 1)
  expect_equal(s$execute("2"), 2)
  expect_error(s$execute("3"), "Maximum executions (2) reached", fixed = TRUE)
  s$close()
  expect_error(s$execute("1"), "Session is not running.", fixed = TRUE)
  expect_error(s$restart(), "Session is not running.", fixed = TRUE)
})

test_that("0.2.0 error texts: closed pool, pool size, names", {
  expect_error(SecureSessionPool$new(size = 0), "at least 1")
  expect_error(SecureSessionPool$new(size = NA), "at least 1")
  expect_error(securer_tool("bad name", "x", function() 1), "valid R identifier")
  expect_error(securer_tool("f", "x", function(`a b`) 1, args = list(`a b` = "numeric")), "valid R identifier")
  p <- SecureSessionPool$new(size = 1)
  p$close()
  expect_error(p$execute("1"), "Pool is closed", fixed = TRUE)
})

test_that("format() and print() of sessions and pools", {
  s <- SecureSession$new(sandbox = TRUE, tools = seed_tools())
  on.exit(s$close())
  expect_match(format(s), "^<SecureSession> \\[running\\] pid=\\S+ sandbox=container tools=2$")
  expect_output(print(s), "<SecureSession> [running]", fixed = TRUE)
  s$close()
  expect_match(format(s), "^<SecureSession> \\[stopped\\]")
  p <- SecureSessionPool$new(size = 2)
  on.exit(p$close(), add = TRUE)
  # securer 0.2.0's texts exactly.
  expect_identical(format(p), "<SecureSessionPool> size=2 idle=2 busy=0")
  expect_output(print(p), "^<SecureSessionPool> size=2 idle=2 busy=0\n  sandbox: container")
  p$close()
  expect_identical(format(p), "<SecureSessionPool> [closed]")
})

test_that("format() of a session shows the box R's pid", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  expect_match(format(s), "pid=[0-9]+ ")
})

test_that("$tools() is a list named by tool", {
  s <- SecureSession$new(sandbox = TRUE, tools = seed_tools())
  on.exit(s$close())
  t <- s$tools()
  expect_identical(names(t), c("add", "get_weather"))
  expect_identical(t$add$args, c(a = "numeric", b = "numeric"))
  expect_identical(t$get_weather$description, "Get weather for a city")
})

test_that("pool$size() is 0 after close()", {
  p <- SecureSessionPool$new(size = 1)
  expect_identical(p$size(), 1L)
  p$close()
  expect_identical(p$size(), 0L)
  expect_identical(p$status()$total, 0L)
})

test_that("pool sizes up to 100; a server cap lower than the size is a clear error", {
  expect_error(SecureSessionPool$new(size = 101), "at most 100")
  # The test server keeps the default cap of 16 sessions per client.
  expect_error(SecureSessionPool$new(size = 17), "Pool size 17 is over what this securer-runc server allows")
})

test_that("acquire_timeout is sent on pool execute; pool$execute() sends no timeout by default", {
  p <- SecureSessionPool$new(size = 1)
  on.exit(p$close())
  sent <- sent_messages(expect_equal(p$execute("1 + 1", acquire_timeout = 5), 2))
  ex <- Filter(function(m) is.list(m) && identical(m$op, "execute"), sent)
  expect_equal(ex[[1]]$acquire_timeout, 5)
  expect_null(ex[[1]]$timeout)
  expect_error(p$execute("1", acquire_timeout = -1), "acquire_timeout")
})

test_that("a pool with no free session says 'All sessions are busy.' past acquire_timeout", {
  p <- SecureSessionPool$new(size = 1)
  on.exit(p$close())
  # The only session's R ends; its replacement takes a container start
  # (hundreds of ms), during which no session is free.
  try(p$execute("quit(save = 'no')"), silent = TRUE)
  expect_error(p$execute("1", acquire_timeout = 0), "^All sessions are busy\\.$")
  # Waiting gets the replacement.
  expect_equal(p$execute("2", acquire_timeout = 60), 2)
})

test_that("limits$cpu is the default timeout of execute_r() and $execute()", {
  expect_error(execute_r("Sys.sleep(10)", limits = list(cpu = 1)), "Execution timed out after 1 second\\(s\\)")
  sent <- sent_messages(execute_r("1", limits = list(cpu = 7)))
  ex <- Filter(function(m) is.list(m) && identical(m$op, "execute"), sent)
  expect_equal(ex[[1]]$timeout, 7)
  # Never "after NULL second(s)".
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  e <- tryCatch(s$execute("Sys.sleep(40)", timeout = 1), error = conditionMessage)
  expect_identical(e, "Execution timed out after 1 second(s)")
})

test_that("limits: memory -1 and 0 are refused with 0.2.0's message; stack is accepted", {
  expect_error(SecureSession$new(sandbox = TRUE, limits = list(memory = -1)),
               "Limit 'memory' must be a single positive number, got: -1", fixed = TRUE)
  expect_error(SecureSession$new(sandbox = TRUE, limits = list(memory = 0)),
               "Limit 'memory' must be a single positive number, got: 0", fixed = TRUE)
  s <- SecureSession$new(sandbox = TRUE, limits = list(stack = 8 * 1024^2))
  on.exit(s$close())
  expect_equal(s$execute("1 + 1"), 2)
})

test_that("limits over the operator's ceilings are clamped with a warning", {
  sent <- sent_messages(try(s0 <- SecureSession$new(sandbox = TRUE), silent = TRUE))
  expect_true(isTRUE(sent[[1]]$clamp) || isTRUE(sent[[2]]$clamp))
  s0$close()
  # The test server's --max-timeout is an hour.
  expect_warning(s <- SecureSession$new(sandbox = TRUE, limits = list(cpu = 7200)), "lowered to them: cpu$")
  on.exit(s$close())
  expect_equal(s$execute("1"), 1)
})

test_that("legacy tools are accepted with a deprecation warning", {
  expect_warning(s <- SecureSession$new(sandbox = TRUE, tools = list(add = function(a, b) a + b)),
                 class = "deprecatedWarning")
  on.exit(s$close())
  expect_identical(names(s$tools()), "add")
  expect_equal(s$execute("add(2, 3)"), 5)
  expect_error(SecureSession$new(sandbox = TRUE, tools = list(function(a) a)), "named list")
})

test_that("verbose = TRUE says what happens", {
  msgs <- character()
  withCallingHandlers({
    s <- SecureSession$new(sandbox = TRUE, verbose = TRUE, tools = seed_tools())
    s$execute("add(1, 2)")
    s$close()
  }, message = function(m) {
    msgs <<- c(msgs, conditionMessage(m))
    invokeRestart("muffleMessage")
  })
  expect_true(any(grepl("session .* started", msgs)), info = paste(msgs, collapse = ""))
  expect_true(any(grepl("executing", msgs)))
  expect_true(any(grepl("tool call add\\(\\)", msgs)))
  expect_true(any(grepl("execution done", msgs)))
  expect_true(any(grepl("session .* closed", msgs)))
})

test_that("output_handler errors are ignored", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  seen <- 0
  v <- s$execute('cat("a\\nb\\n"); 42', output_handler = function(line) {
    seen <<- seen + 1
    stop("handler broke")
  })
  expect_equal(as.numeric(v), 42)
  expect_gte(seen, 2)
})

test_that("validate_code(): 0.2.0 input checks and pattern set", {
  for (bad in list(NULL, 42, c("a", "b"), NA_character_)) {
    expect_error(validate_code(bad), "must be a single character string")
  }
  expect_match(validate_code("system('ls')")$warnings, "system\\(\\)")
  expect_match(validate_code("x <- system2('ls')")$warnings, "system2\\(\\)")
  expect_match(validate_code(".Internal(foo())")$warnings, "\\.Internal\\(\\)")
  expect_match(validate_code("Sys.setenv(A = 1)")$warnings, "Sys.setenv\\(\\)")
  expect_match(validate_code("shell('dir')")$warnings, "shell\\(\\)")
  # The calls 0.2.0's documentation names, and the rest of its set.
  for (f in c(".Call", ".C", ".Fortran", ".External", "dyn.load", "pipe", "processx::run", "callr::r",
              "socketConnection", "url", "do.call")) {
    w <- validate_code(sprintf("x <- %s('a')", f))$warnings
    expect_identical(w, sprintf("Code contains call to `%s()` which may be restricted by the sandbox", f), info = f)
  }
  expect_length(validate_code("curl('x'); my.pipe('y'); x.Call('w')")$warnings, 0)
  expect_match(validate_code("base::system('ls')")$warnings, "system\\(\\)")
  # Not in 0.2.0's set.
  expect_length(validate_code("eval(quote(1)); assign('a', 1); unlink('x')")$warnings, 0)
  expect_length(validate_code("mysystem('x')")$warnings, 0)
  v <- validate_code("if (TRUE {")
  expect_false(v$valid)
  expect_null(validate_code("1")$error)
})

test_that("sanitize_errors masks paths as [path], IPs, ports and pids", {
  san <- securer:::.securer_sanitize
  expect_identical(san("cannot open file '/home/alice/secret.csv': No such file"),
                   "cannot open file '[path]': No such file")
  expect_identical(san("connect to 10.1.2.3:5432 failed"), "connect to [host] failed")
  expect_identical(san("no route to fe80::1 today"), "no route to [host] today")
  expect_identical(san("listening on port 8080"), "listening on port [port]")
  expect_identical(san("db.internal:5432 refused"), "db.internal:[port] refused")
  expect_identical(san("killed pid 4242"), "killed pid [pid]")
  expect_identical(san("x / y is not 1/2"), "x / y is not 1/2")
  expect_identical(san("could not find stats::lm at 12:30:45"), "could not find stats::lm at 12:30:45")
  expect_identical(san("[2001:db8::7]:443 down"), "[host] down")
  s <- SecureSession$new(sandbox = TRUE, sanitize_errors = TRUE)
  on.exit(s$close())
  expect_error(s$execute('stop("cannot read /etc/secret/key from 192.168.1.5:22, pid 99")'),
               "cannot read [path] from [host], pid [pid]", fixed = TRUE)
})

test_that("the audit_log is written in 0.2.0's schema", {
  dir <- file.path(tempfile("audit-"), "deeper")
  path <- file.path(dir, "audit.jsonl")
  s <- SecureSession$new(sandbox = TRUE, tools = seed_tools(), audit_log = path)
  s$execute("add(1, 2)")
  try(s$execute("stop('bad')"), silent = TRUE)
  s$restart()
  s$close()
  expect_identical(as.character(file.info(path)$mode), "600")
  recs <- lapply(readLines(path), jsonlite::fromJSON, simplifyVector = FALSE)
  events <- vapply(recs, function(r) r$event, "")
  expect_identical(events, c("session_start", "execute_start", "tool_call", "tool_result", "execute_complete",
                             "execute_start", "execute_error", "session_restart", "session_close"))
  for (r in recs) {
    expect_match(r$timestamp, "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$")
    expect_true(nzchar(r$session_id))
  }
  expect_identical(recs[[2]]$code, "add(1, 2)")
  expect_identical(recs[[3]]$tool, "add")
  expect_equal(recs[[3]]$args, list(a = 1, b = 2))
  expect_true(recs[[4]]$ok)
  expect_true(is.numeric(recs[[5]]$elapsed))
  expect_identical(recs[[7]]$error, "bad")
  expect_true(is.numeric(recs[[7]]$elapsed))
})

test_that("sessions sharing an audit_log have distinct session ids; tools is an array", {
  path <- file.path(tempfile("audit-"), "shared.jsonl")
  one <- list(securer_tool("add", "Add", fn = function(a, b) a + b, args = list(a = "numeric", b = "numeric")))
  for (i in 1:2) {
    s <- SecureSession$new(sandbox = TRUE, tools = one, audit_log = path)
    s$execute("1")
    s$close()
  }
  recs <- lapply(readLines(path), jsonlite::fromJSON, simplifyVector = FALSE)
  starts <- Filter(function(r) identical(r$event, "session_start"), recs)
  expect_length(starts, 2)
  expect_false(identical(starts[[1]]$session_id, starts[[2]]$session_id))
  expect_match(starts[[1]]$session_id, "^sess_")
  expect_identical(starts[[1]]$tools, list("add"))
  # Every record of a session carries its id.
  ids <- vapply(recs, function(r) r$session_id, "")
  expect_identical(sort(unique(ids)), sort(c(starts[[1]]$session_id, starts[[2]]$session_id)))
})

test_that("the audit_log refuses symlinks and what is not a regular file", {
  target <- tempfile("audit-target-")
  file.create(target)
  link <- tempfile("audit-link-")
  file.symlink(target, link)
  expect_error(SecureSession$new(sandbox = TRUE, audit_log = link), "symbolic link")
  expect_error(SecureSession$new(sandbox = TRUE, audit_log = "/dev/null"), "not a regular file")
  expect_error(SecureSession$new(sandbox = TRUE, audit_log = tempdir()), "not a regular file")
})

test_that("a failed SecureSession$new() leaves no container", {
  before <- state_entries()
  # A memory limit R cannot start in: the start fails after the box was made.
  expect_error(SecureSession$new(sandbox = TRUE, limits = list(memory = 4 * 1024^2)))
  expect_identical(setdiff(state_entries(), before), character())
})

test_that("a SecureSession$new() interrupted while the box starts leaves no container", {
  before <- state_entries()
  client <- processx::process$new("Rscript", c("--vanilla", "-e",
    'library(securer); s <- SecureSession$new(sandbox = TRUE); Sys.sleep(60)'),
    stdout = "|", stderr = "2>&1", cleanup = TRUE)
  on.exit(if (client$is_alive()) client$kill())
  for (i in 1:600) {
    if (length(setdiff(state_entries(), before)) > 0) break
    Sys.sleep(0.02)
  }
  expect_gt(length(setdiff(state_entries(), before)), 0)
  client$interrupt()
  client$wait(60000)
  expect_false(client$is_alive())
  # What the interrupted start made is gone once the client has exited
  # (its server drained); no later server start is needed.
  for (i in 1:100) {
    if (length(setdiff(state_entries(), before)) == 0) break
    Sys.sleep(0.05)
  }
  expect_identical(setdiff(state_entries(), before), character(), info = client$read_all_output())
})

test_that("a clamped limits$cpu becomes the applied default timeout", {
  ev <- jsonlite::fromJSON('{"type":"session","clamped":["timeout"],"limits":{"timeout":3600}}', simplifyVector = FALSE)
  expect_equal(securer:::.securer_applied_timeout(ev, 7200), 3600)
  ev <- jsonlite::fromJSON('{"type":"session","clamped":["pids"],"limits":{"timeout":3600}}', simplifyVector = FALSE)
  expect_equal(securer:::.securer_applied_timeout(ev, 50), 50)
  expect_null(securer:::.securer_applied_timeout(list(type = "session"), NULL))
})

test_that("the clamp warning names the limits lowered, as the caller named them", {
  # The server's event, as the link parses it (no simplification).
  ev <- jsonlite::fromJSON('{"type":"session","clamped":["memory_bytes","timeout","max_executions"]}',
                           simplifyVector = FALSE)
  expect_warning(securer:::.securer_warn_clamped(ev),
                 "lowered to them: memory, cpu, max_executions$")
  expect_silent(securer:::.securer_warn_clamped(list(type = "session")))
})
