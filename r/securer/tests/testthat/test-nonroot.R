# A user who is not root: without a daemon, a clear error; with a root
# daemon's socket, the same code works through it.

run_as_nobody <- function(code, socket, serve_args = Sys.getenv("SECURER_SERVE_ARGS")) {
  script <- file.path("/tmp", paste0("securer-nobody-", Sys.getpid(), ".R"))
  writeLines(code, script)
  Sys.chmod(script, "0644")
  on.exit(unlink(script))
  out <- suppressWarnings(system2("runuser", c("-u", "nobody", "--", "env", paste0("SECURER_SOCKET=", socket),
                                               shQuote(paste0("SECURER_SERVE_ARGS=", serve_args)), "XDG_RUNTIME_DIR=",
                                               "Rscript", "--vanilla", script), stdout = TRUE, stderr = TRUE))
  paste(out, collapse = "\n")
}

test_that("a non-root user without a daemon gets a clear message", {
  expect_true(securer:::.securer_is_root(), info = "the package tests run as root, to start the daemon")
  out <- run_as_nobody('library(securer); cat(tryCatch(execute_r("1 + 1"), error = function(e) conditionMessage(e)))',
                       "/nonexistent/securer.sock")
  expect_match(out, "no sandbox available")
  expect_match(out, "securer-runc serve --listen")
})

test_that("a non-root user without a daemon can run sandbox = FALSE", {
  out <- run_as_nobody(paste(
    'library(securer)',
    'add <- securer_tool("add", "Add", fn = function(a, b) a + b, args = list(a = "numeric", b = "numeric"))',
    's <- SecureSession$new(tools = list(add))',
    'cat("RESULT", s$execute("Sys.info()[[\'effective_user\']]"), s$execute("add(2, 3)"),',
    '    execute_r("1 + 1", sandbox = FALSE), "\\n")',
    's$close()', sep = "\n"), "/nonexistent/securer.sock", serve_args = "")
  expect_match(out, "sandbox = FALSE: code runs in a plain R process", info = out)
  expect_match(out, "RESULT nobody 5 2", info = out)
  # Its state went to nobody's own dir in the temp dir, and was removed.
  state <- file.path(Sys.getenv("TMPDIR", "/tmp"), paste0("securer-runc-", system2("id", c("-u", "nobody"), stdout = TRUE)))
  expect_true(dir.exists(file.path(state, "sessions")))
  expect_length(list.files(file.path(state, "sessions")), 0)
  unlink(state, recursive = TRUE)
})

test_that("a non-root user works through a root daemon's socket", {
  dir <- file.path("/tmp", paste0("securer-daemon-", Sys.getpid()))
  dir.create(dir, mode = "0755")
  Sys.chmod(dir, "0755")
  on.exit(unlink(dir, recursive = TRUE))
  sock <- file.path(dir, "d.sock")
  log <- file.path(dir, "daemon.log")
  daemon <- processx::process$new(securer:::.securer_binary(),
                                  c("serve", "--listen", paste0("unix:", sock), "--socket-mode", "0666",
                                    securer:::.securer_serve_args()),
                                  stdout = log, stderr = "2>&1", cleanup = TRUE)
  on.exit(if (daemon$is_alive()) daemon$kill(), add = TRUE)
  for (i in 1:200) if (file.exists(sock)) break else Sys.sleep(0.05)
  expect_true(file.exists(sock), info = paste(readLines(log), collapse = "\n"))
  out <- run_as_nobody(paste(
    'library(securer)',
    'add <- securer_tool("add", "Add", fn = function(a, b) a + b, args = list(a = "numeric", b = "numeric"))',
    'cat(Sys.info()[["effective_user"]], execute_r("1 + 1"), execute_r("add(2, 3)", tools = list(add)),',
    '    execute_r("Sys.info()[[\'nodename\']]"), "\\n")', sep = "\n"), sock)
  expect_match(out, "^nobody 2 5 sandbox", info = out)
  # The drain first finishes closing what the client made (three boxes):
  # seconds on a loaded host, so the wait is only a hang guard.
  t0 <- Sys.time()
  daemon$signal(tools::SIGTERM)
  daemon$wait(90000)
  took <- format(Sys.time() - t0)
  expect_equal(daemon$get_exit_status(), 0L, info = paste(c(paste("after", took), readLines(log)), collapse = "\n"))
  expect_false(file.exists(sock))
})
