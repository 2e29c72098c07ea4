# execute_r() through a daemon runs as one one-shot request (no session
# made): in the daemon's warm box, fresh each time, tools answered here.

start_warm_daemon <- function() {
  dir <- tempfile("securer-d-")
  dir.create(dir)
  sock <- file.path(dir, "d.sock")
  args <- c("serve", "--listen", paste0("unix:", sock), "--warm", "1", "--max-sessions", "4",
            securer:::.securer_serve_args())
  p <- processx::process$new(securer:::.securer_binary(), args, stderr = file.path(dir, "serve.log"))
  for (i in 1:300) {
    if (file.exists(sock)) break
    Sys.sleep(0.05)
  }
  list(p = p, sock = sock, dir = dir)
}

stop_daemon <- function(d) {
  d$p$signal(15L)
  d$p$wait(20000)
  if (d$p$is_alive()) d$p$kill()
  unlink(d$dir, recursive = TRUE)
}

test_that("execute_r through a daemon is one one-shot execute, fresh each time", {
  d <- start_warm_daemon()
  on.exit(stop_daemon(d))
  withr_sock <- Sys.getenv("SECURER_SOCKET")
  Sys.setenv(SECURER_SOCKET = d$sock)
  on.exit(Sys.setenv(SECURER_SOCKET = withr_sock), add = TRUE)
  expect_true(file.exists(d$sock), info = paste(readLines(file.path(d$dir, "serve.log")), collapse = "\n"))
  sent <- sent_messages(v <- execute_r("x <- 41; x + 1"))
  expect_equal(v, 42)
  ops <- vapply(sent, function(m) m$op, "")
  expect_equal(ops, "execute")
  expect_null(sent[[1]]$session)
  # Nothing of the last one is left for the next.
  expect_false(execute_r("exists('x')"))
  # Tools are answered by this R; errors and output as before.
  expect_equal(execute_r("add(2, 3)", tools = seed_tools()[1]), 5)
  expect_error(execute_r("stop('boom')"), "boom")
  out <- execute_r("cat('hello\\n'); 7")
  expect_equal(attr(out, "output"), "hello")
  # Limits of its own: still one request; the daemon starts a box for it.
  sent <- sent_messages(v <- execute_r("Sys.getpid() > 0", limits = list(nproc = 40)))
  expect_true(v)
  expect_equal(sent[[1]]$options$pids, 40)
  # Over the daemon's timeout ceiling: lowered, with a warning.
  expect_warning(execute_r("1", limits = list(cpu = 1e7)), "lowered")
})
