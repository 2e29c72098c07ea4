# The link to securer-runc's session service: newline-delimited JSON over a
# Unix socket (a running daemon) or over the stdin and stdout of a
# `securer-runc serve --stdio` this R process starts (as root). The
# protocol is PROTOCOL.md in securer-runc's repository.

.securer_socket <- function() {
  getOption("securer.socket", Sys.getenv("SECURER_SOCKET", "/run/securer-runc/serve.sock"))
}

.securer_binary <- function() {
  getOption("securer.binary", Sys.getenv("SECURER_RUNC", "securer-runc"))
}

.securer_serve_args <- function() {
  extra <- getOption("securer.serve_args", Sys.getenv("SECURER_SERVE_ARGS", ""))
  extra <- unlist(strsplit(extra, "[[:space:]]+"))
  extra[nzchar(extra)]
}

.securer_is_root <- function() {
  identical(unname(Sys.info()[["effective_user"]]), "root")
}

# .securer_connect() -> a link: an environment with the connections, the
# server process (when spawned) and a buffer of lines read ahead.
# sandbox = FALSE always spawns a server of its own with --unsafe-no-sandbox
# (R on this host, as this user); sandbox = TRUE never accepts a server
# that says it runs without the sandbox.
.securer_connect <- function(verbose = FALSE, sandbox = TRUE) {
  link <- new.env(parent = emptyenv())
  link$pending <- character()
  link$next_id <- 0L
  sock <- .securer_socket()
  if (isTRUE(sandbox) && nzchar(sock) && file.exists(sock)) {
    con <- tryCatch(processx::conn_connect_unix_socket(sock), error = function(e) {
      stop(sprintf("securer: cannot connect to the securer-runc daemon at %s: %s", sock, conditionMessage(e)), call. = FALSE)
    })
    link$read <- con
    link$write <- con
    link$how <- paste("daemon at", sock)
  } else if (!isTRUE(sandbox) || .securer_is_root()) {
    .securer_spawn(link, if (isTRUE(sandbox)) character() else "--unsafe-no-sandbox")
  } else {
    stop(paste0(
      "securer: no sandbox available. Either start the securer-runc daemon as root ",
      "(securer-runc serve --listen unix:", sock, " --socket-group <a group you are in>) ",
      "and point options(securer.socket) or SECURER_SOCKET at its socket if it is elsewhere, ",
      "or run R as root so that securer can start one itself. ",
      "sandbox = FALSE runs code without a sandbox, for trusted code only."), call. = FALSE)
  }
  hello <- tryCatch(.securer_read(link, 30000), error = function(e) {
    .securer_disconnect(link)
    stop(e)
  }, interrupt = function(e) {
    .securer_disconnect(link)
    stop("securer: interrupted while connecting", call. = FALSE)
  })
  if (!identical(hello$type, "hello") || !identical(as.integer(hello$protocol), 1L)) {
    .securer_disconnect(link)
    stop("securer: the server did not greet with protocol 1", call. = FALSE)
  }
  link$sandboxed <- !identical(hello$sandboxed, FALSE)
  if (isTRUE(sandbox) && !link$sandboxed) {
    .securer_disconnect(link)
    stop(sprintf("securer: the server (%s) runs R without a sandbox (--unsafe-no-sandbox); refusing, since sandbox = TRUE was asked",
                 link$how), call. = FALSE)
  }
  if (!isTRUE(sandbox)) .securer_say_unsandboxed()
  if (isTRUE(verbose)) message("securer: connected to ", link$how, " (", hello$server, ")")
  link
}

# .securer_spawn starts `securer-runc serve --stdio` with extra flags and
# links to it over its stdin and stdout.
.securer_spawn <- function(link, flags) {
  bin <- .securer_binary()
  if (!nzchar(Sys.which(bin)) && !file.exists(bin)) {
    stop(sprintf("securer: '%s' was not found: install securer-runc, or set options(securer.binary = ...)", bin), call. = FALSE)
  }
  link$log <- tempfile("securer-serve-", fileext = ".log")
  link$proc <- processx::process$new(bin, c("serve", "--stdio", flags, .securer_serve_args()),
                                     stdin = "|", stdout = "|", stderr = link$log, cleanup = TRUE)
  link$read <- link$proc$get_output_connection()
  link$write <- link$proc$get_input_connection()
  link$how <- paste("securer-runc serve --stdio", paste(flags, collapse = " "), "pid", link$proc$get_pid())
}

# Said once per R process: sandbox = FALSE is not a sandbox.
.securer_said <- new.env(parent = emptyenv())
.securer_say_unsandboxed <- function() {
  if (isTRUE(.securer_said$unsandboxed)) return(invisible())
  .securer_said$unsandboxed <- TRUE
  message("securer: sandbox = FALSE: code runs in a plain R process on this host, as this user, ",
          "with no isolation (only memory, open-file and file-size limits). Use it for trusted code only.")
}

# .securer_disconnect closes the link. A spawned server is let finish:
# the end of its stdin makes it drain (close its sessions and their
# containers, PROTOCOL "Shutdown"); a server still busy after a while
# (a start in progress) gets SIGTERM, which drains too, and only one that
# outlives the drain timeout is killed, since a kill would leave its
# containers for the next start's reap.
.securer_disconnect <- function(link) {
  if (isTRUE(link$disconnected)) return(invisible())
  link$closed <- TRUE
  link$disconnected <- TRUE
  if (!is.null(link$alarm)) .securer_alarm_stop(link$alarm)
  try(close(link$write), silent = TRUE)
  if (!is.null(link$proc)) {
    link$proc$wait(5000)
    if (link$proc$is_alive()) {
      try(link$proc$signal(tools::SIGTERM), silent = TRUE)
      link$proc$wait(1000 * getOption("securer.drain_timeout", 120))
    }
    if (link$proc$is_alive()) link$proc$kill()
  }
  invisible()
}

# .securer_send(link, msg): msg is a list, or a JSON text already.
.securer_send <- function(link, msg) {
  if (isTRUE(link$closed)) stop("securer: the session is closed", call. = FALSE)
  json <- if (is.character(msg)) msg else jsonlite::toJSON(msg, auto_unbox = TRUE, null = "null", digits = NA, json_verbatim = TRUE)
  left <- charToRaw(paste0(json, "\n"))
  repeat {
    left <- processx::conn_write(link$write, left)
    if (length(left) == 0) break
    Sys.sleep(0.001)
  }
}

# .securer_read(link, timeout_ms) -> the next event (a list), or NULL when
# none arrives within timeout_ms (-1: wait).
.securer_read <- function(link, timeout_ms = -1) {
  repeat {
    if (length(link$pending) > 0) {
      line <- link$pending[1]
      link$pending <- link$pending[-1]
      return(jsonlite::fromJSON(line, simplifyVector = FALSE))
    }
    ready <- processx::poll(list(link$read), timeout_ms)[[1]]
    if (identical(ready, "timeout")) return(NULL)
    lines <- processx::conn_read_lines(link$read)
    if (length(lines) == 0 && !processx::conn_is_incomplete(link$read)) {
      link$closed <- TRUE
      msg <- "securer: the securer-runc server closed the connection"
      if (!is.null(link$log) && file.exists(link$log)) {
        msg <- paste(c(msg, tail(readLines(link$log, warn = FALSE), 5)), collapse = "\n")
      }
      stop(msg, call. = FALSE)
    }
    link$pending <- c(link$pending, lines[nzchar(lines)])
  }
}

.securer_new_id <- function(link) {
  link$next_id <- link$next_id + 1L
  as.character(link$next_id)
}

# .securer_request(link, msg, want) sends msg with a new id and returns the
# first event of type want for it; an error event becomes an R error.
.securer_request <- function(link, msg, want) {
  msg$id <- .securer_new_id(link)
  .securer_send(link, msg)
  repeat {
    ev <- .securer_read(link)
    if (!identical(ev$id, msg$id)) next
    if (identical(ev$type, "error")) {
      stop(sprintf("securer: %s (%s)", ev$error$message, ev$error$code), call. = FALSE)
    }
    if (identical(ev$type, want)) return(ev)
  }
}
