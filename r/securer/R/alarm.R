# Tools run in this R process, which is single-threaded: a tool function
# that runs past the execution's timeout would hold execute() until it
# returned, although the server ends the execution at its timeout. So a
# tool runs under an alarm: a small bash process, one per link, that
# sends this process SIGINT at the execution's deadline. R answers the
# interrupt in its loops and waits (Sys.sleep included, which
# setTimeLimit() does not cut outside an event loop); the tool is
# abandoned unanswered and the server's tool_cancelled and timeout result
# follow (PROTOCOL.md). A tool deep in C code that never checks for
# interrupts still runs to its end; its late answer is then not taken.
# options(securer.tool_alarm = FALSE) turns the alarm off (tools then
# run to their end, as before).

# The alarm: "arm SECONDS" sends SIGINT to the pid in $1 after SECONDS
# unless "disarm" comes first; each "disarm" is answered "ok", after any
# SIGINT it sent. read -t with a fraction needs bash 4; an older bash
# exits, and tools run unbounded as before.
.securer_alarm_script <- r"(
[ "${BASH_VERSINFO[0]}" -ge 4 ] || exit 3
left=
while :; do
  if [ -n "$left" ]; then read -r -t "$left" cmd; rc=$?; else read -r cmd; rc=$?; fi
  if [ "$rc" -gt 128 ]; then kill -INT "$1"; left=; continue; fi
  [ "$rc" -eq 0 ] || exit 0
  case $cmd in
    arm\ *) left=${cmd#arm } ;;
    disarm) left=; echo ok ;;
  esac
done
)"

# .securer_alarm(link) -> the link's alarm (started at its first use), or
# NULL where there is none (not a Unix, no bash 4).
.securer_alarm <- function(link) {
  a <- link$alarm
  if (!is.null(a) && a$proc$is_alive()) return(a)
  if (!is.null(a) || .Platform$OS.type != "unix") return(NULL)
  bash <- Sys.which("bash")
  if (!nzchar(bash)) return(NULL)
  proc <- tryCatch(processx::process$new(bash, c("-c", .securer_alarm_script, "securer-alarm", Sys.getpid()),
                                         stdin = "|", stdout = "|", stderr = NULL, cleanup = TRUE),
                   error = function(e) NULL)
  if (is.null(proc)) return(NULL)
  a <- new.env(parent = emptyenv())
  a$proc <- proc
  a$owed <- 0L # "ok"s not read yet
  link$alarm <- a
  a
}

.securer_alarm_write <- function(a, line) {
  ok <- tryCatch({
    left <- charToRaw(paste0(line, "\n"))
    while (length(left) > 0) left <- processx::conn_write(a$proc$get_input_connection(), left)
    TRUE
  }, error = function(e) FALSE)
  if (!ok) .securer_alarm_stop(a)
  ok
}

# .securer_alarm_disarm(a): no SIGINT comes after it returns (one sent
# before is pending, for the caller's handler to take).
.securer_alarm_disarm <- function(a) {
  a$owed <- a$owed + 1L
  if (!.securer_alarm_write(a, "disarm")) return(invisible())
  out <- a$proc$get_output_connection()
  while (a$owed > 0L) {
    if (!identical(processx::poll(list(out), 5000)[[1]], "ready")) {
      .securer_alarm_stop(a)
      break
    }
    lines <- processx::conn_read_lines(out)
    if (length(lines) == 0 && !processx::conn_is_incomplete(out)) {
      .securer_alarm_stop(a)
      break
    }
    a$owed <- a$owed - sum(lines == "ok")
  }
  invisible()
}

.securer_alarm_stop <- function(a) {
  a$owed <- 0L
  if (!is.null(a$proc)) try(a$proc$kill(), silent = TRUE)
}

.securer_now <- function() proc.time()[["elapsed"]]

# .securer_call_tool(link, fn, args, deadline) runs fn(args) here and
# returns list(ok = value), list(err = message), or list(cut = TRUE) when
# the deadline (.securer_now() seconds; NULL: none) came first. An
# interrupt before the deadline (the user's) goes on as an interrupt.
.securer_call_tool <- function(link, fn, args, deadline) {
  call <- function() tryCatch(list(ok = do.call(fn, args)), error = function(e) list(err = conditionMessage(e)))
  if (is.null(deadline) || !isTRUE(getOption("securer.tool_alarm", TRUE))) return(call())
  left <- deadline - .securer_now()
  if (left <= 0) return(list(cut = TRUE))
  a <- .securer_alarm(link)
  if (is.null(a) || !.securer_alarm_write(a, sprintf("arm %.3f", left))) return(call())
  # Disarmed however this ends (an interrupt of the user's included): a
  # SIGINT must never come once the tool is over.
  armed <- TRUE
  disarm <- function() {
    if (armed) .securer_alarm_disarm(a)
    armed <<- FALSE
  }
  on.exit(disarm())
  withRestarts(
    withCallingHandlers({
      value <- call()
      disarm()
      # A SIGINT the alarm sent just before the disarm is taken here.
      Sys.sleep(0)
      value
    }, interrupt = function(cond) {
      if (.securer_now() >= deadline - 0.05) invokeRestart("securer_tool_cut")
    }),
    securer_tool_cut = function() list(cut = TRUE))
}
