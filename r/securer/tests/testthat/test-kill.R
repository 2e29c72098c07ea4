# Killing a client mid-execution leaves no session, container or cgroup.

test_that("kill -9 of an R client mid-execution leaves nothing behind", {
  args <- securer:::.securer_serve_args()
  state <- args[which(args == "--state") + 1]
  expect_true(length(state) == 1 && nzchar(state), info = "make rtest passes --state in SECURER_SERVE_ARGS")
  sessions <- file.path(state, "sessions")
  before <- list.files(sessions)
  client <- processx::process$new("Rscript", c("--vanilla", "-e",
    'library(securer); execute_r("Sys.sleep(60)", timeout = 120)'), stdout = "|", stderr = "2>&1", cleanup = TRUE)
  on.exit(if (client$is_alive()) client$kill())
  for (i in 1:300) {
    if (length(setdiff(list.files(sessions), before)) > 0) break
    Sys.sleep(0.05)
  }
  expect_gt(length(setdiff(list.files(sessions), before)), 0)
  Sys.sleep(0.5) # well inside the execution
  client$signal(tools::SIGKILL)
  client$wait(5000)
  for (i in 1:300) {
    if (length(setdiff(list.files(sessions), before)) == 0) break
    Sys.sleep(0.05)
  }
  expect_equal(setdiff(list.files(sessions), before), character())
  expect_equal(setdiff(list.files(file.path(state, "containers")), before), character())
})
