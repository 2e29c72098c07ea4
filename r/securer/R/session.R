# SecureSession and SecureSessionPool: sessions of securer-runc's
# container engine, driven over its session service.

.securer_check_sandbox <- function(sandbox) {
  if (!is.logical(sandbox) || length(sandbox) != 1 || is.na(sandbox)) {
    stop("sandbox must be TRUE or FALSE", call. = FALSE)
  }
  sandbox
}

`%||%` <- function(a, b) if (is.null(a)) b else a

.securer_say <- function(verbose, ...) if (isTRUE(verbose)) message("securer: ", ...)

# .securer_lines(text, handler) calls handler on each complete line of
# text and returns what is left after the last newline.
.securer_lines <- function(text, handler) {
  parts <- strsplit(text, "\n", fixed = TRUE)[[1]]
  complete <- if (endsWith(text, "\n")) parts else parts[-length(parts)]
  for (l in complete) handler(l)
  if (endsWith(text, "\n") || length(parts) == 0) "" else parts[length(parts)]
}

# .securer_handle calls the user's output_handler; as in 0.2.0, an error in
# the handler is ignored (the execution goes on).
.securer_handle <- function(handler, line) {
  tryCatch(handler(line), error = function(e) NULL)
  invisible()
}

# .securer_answer(link, ev, tools, ...) runs the tool R called, here in the
# calling process, and sends its value (typed) or its error back. A tool
# still running at the execution's deadline (.securer_now() seconds, NULL:
# none) is abandoned unanswered (.securer_call_tool): the server ends the
# execution at its timeout and reports the call cancelled.
.securer_answer <- function(link, ev, tools, n_calls, max_tool_calls, audit, verbose, deadline = NULL) {
  reply <- list(op = "tool_result", call = ev$call)
  tool <- tools[[ev$tool]]
  args <- tryCatch(lapply(ev$args, .securer_decode), error = function(e) ev$args_plain)
  .securer_audit_write(audit, "tool_call", tool = ev$tool, args = ev$args_plain %||% args)
  .securer_say(verbose, "tool call ", ev$tool, "()")
  if (!is.null(max_tool_calls) && n_calls > max_tool_calls) {
    reply$error <- sprintf("Maximum tool calls (%d) exceeded", as.integer(max_tool_calls))
  } else if (is.null(tool)) {
    reply$error <- sprintf("unknown tool '%s'", ev$tool)
  } else {
    value <- .securer_call_tool(link, tool$fn, args, deadline)
    if (isTRUE(value$cut)) {
      .securer_audit_write(audit, "tool_cancelled", tool = ev$tool, reason = "timeout")
      .securer_say(verbose, "tool ", ev$tool, "() stopped at the execution's timeout")
      return(invisible(FALSE))
    }
    if (!is.null(value$err)) {
      reply$error <- value$err
    } else {
      reply$typed <- structure(.securer_encode(value$ok), class = "json")
    }
  }
  told <- .securer_told_cancelled(link, ev)
  if (!is.null(told)) {
    # The server gave up on the call while the tool ran: no answer.
    .securer_audit_write(audit, "tool_cancelled", tool = ev$tool, reason = told)
    return(invisible(FALSE))
  }
  if (is.null(reply$error)) {
    .securer_audit_write(audit, "tool_result", tool = ev$tool, ok = TRUE)
  } else {
    .securer_audit_write(audit, "tool_result", tool = ev$tool, ok = FALSE, error = reply$error)
    .securer_say(verbose, "tool ", ev$tool, "() failed: ", reply$error)
  }
  .securer_send(link, reply)
  invisible(TRUE)
}

# .securer_told_cancelled(link, ev) -> the reason of a tool_cancelled for
# ev's call that has arrived, else NULL (read without waiting; the events
# stay queued for the loop).
.securer_told_cancelled <- function(link, ev) {
  if (identical(processx::poll(list(link$read), 0)[[1]], "ready")) {
    lines <- processx::conn_read_lines(link$read)
    link$pending <- c(link$pending, lines[nzchar(lines)])
  }
  needle <- sprintf('"call":"%s"', ev$call)
  for (line in link$pending) {
    if (!grepl('"tool_cancelled"', line, fixed = TRUE) || !grepl(needle, line, fixed = TRUE)) next
    got <- tryCatch(jsonlite::fromJSON(line, simplifyVector = FALSE), error = function(e) NULL)
    if (identical(got$type, "tool_cancelled") && identical(got$call, ev$call)) return(as.character(got$reason %||% "ended"))
  }
  NULL
}

# .securer_run sends one execute request and serves its events until the
# result: output to the handler, tool calls answered here. An interrupt
# (or any error) on this side cancels the execution. extra holds further
# members of the request (acquire_timeout).
.securer_run <- function(link, target, kind, code, timeout, tools, output_handler, max_tool_calls,
                         audit = NULL, verbose = FALSE, extra = list()) {
  id <- .securer_new_id(link)
  msg <- c(list(op = "execute", id = id, code = code), extra)
  msg[[kind]] <- target
  if (!is.null(timeout)) msg$timeout <- as.numeric(timeout)
  # The server's deadline, as seen from here: its timer starts a little
  # later (after a pool's wait for a session too), so this one is never
  # after it. Tools still running then are abandoned.
  limit <- if (!is.null(timeout)) as.numeric(timeout) else link$timeout
  deadline <- if (is.numeric(limit) && length(limit) == 1 && !is.na(limit) && limit > 0) .securer_now() + limit
  .securer_send(link, msg)
  done <- FALSE
  on.exit(if (!done && !isTRUE(link$closed)) {
    try({
      .securer_send(link, list(op = "cancel", id = .securer_new_id(link), target = id))
      repeat {
        ev <- .securer_read(link, 10000)
        if (is.null(ev) || (identical(ev$id, id) && ev$type %in% c("result", "error"))) break
      }
    }, silent = TRUE)
  })
  # The two streams stay apart (the auto-print is stripped from stdout
  # only), in the order they arrived.
  events <- list()
  partial <- ""
  calls <- 0L
  repeat {
    ev <- .securer_read(link)
    if (!identical(ev$id, id)) next
    switch(ev$type,
      stdout = , stderr = {
        events[[length(events) + 1L]] <- list(stream = ev$type, text = ev$text)
        if (!is.null(output_handler)) {
          partial <- .securer_lines(paste0(partial, ev$text), function(l) .securer_handle(output_handler, l))
        }
      },
      tool_call = {
        calls <- calls + 1L
        .securer_answer(link, ev, tools, calls, max_tool_calls, audit, verbose, deadline)
      },
      # The server stopped waiting for a call (its tool was answered,
      # abandoned here, or is done with already): the result follows.
      tool_cancelled = NULL,
      result = {
        done <- TRUE
        if (nzchar(partial) && !is.null(output_handler)) .securer_handle(output_handler, partial)
        return(list(result = ev$result, events = events, clamped = ev$clamped))
      },
      error = {
        done <- TRUE
        stop(sprintf("securer: %s (%s)", ev$error$message, ev$error$code), call. = FALSE)
      })
  }
}

# .securer_strip_stdout(events, n) removes n bytes from the end of the
# stdout stream (what the value's auto-print wrote), leaving stderr alone.
.securer_strip_stdout <- function(events, n) {
  i <- length(events)
  while (n > 0 && i > 0) {
    if (identical(events[[i]]$stream, "stdout")) {
      b <- charToRaw(enc2utf8(events[[i]]$text))
      if (length(b) <= n) {
        n <- n - length(b)
        events[[i]]$text <- ""
      } else {
        events[[i]]$text <- rawToChar(b[seq_len(length(b) - n)])
        Encoding(events[[i]]$text) <- "UTF-8"
        n <- 0
      }
    }
    i <- i - 1L
  }
  events
}

.securer_stream <- function(events, stream) {
  paste(vapply(Filter(function(e) identical(e$stream, stream), events), function(e) e$text, ""), collapse = "")
}

# .securer_output(res) -> the lines the code printed, without the auto-print
# of a visible value: printed_bytes from the end of stdout (the server's
# count), else the printed text when stdout ends with it.
.securer_output <- function(res) {
  r <- res$result
  events <- res$events
  elided <- (r$stdout_elided %||% 0) > 0
  if (isTRUE(r$visible) && !elided) {
    n <- r$printed_bytes
    if (is.null(n) && nzchar(r$printed %||% "")) {
      tail <- paste0(r$printed, "\n")
      if (endsWith(.securer_stream(events, "stdout"), tail)) n <- length(charToRaw(enc2utf8(tail)))
    }
    if (!is.null(n) && n > 0) events <- .securer_strip_stdout(events, n)
  }
  text <- paste(vapply(events, function(e) e$text, ""), collapse = "")
  if (!nzchar(text)) return(character())
  strsplit(sub("\n$", "", text), "\n", fixed = TRUE)[[1]]
}

# .securer_plots(r) -> the PNG plots of a result: a list of raw vectors
# of class securer_plot, or NULL.
.securer_plots <- function(r) {
  plots <- list()
  for (d in r$displays) {
    png <- d$data[["image/png"]]
    if (is.null(png)) next
    plots[[length(plots) + 1L]] <- structure(jsonlite::base64_dec(png), class = "securer_plot",
                                             width = d$metadata$width, height = d$metadata$height,
                                             dpi = d$metadata$dpi)
  }
  if (length(plots)) plots else NULL
}

#' @export
print.securer_plot <- function(x, ...) {
  cat(sprintf("<securer_plot> PNG %sx%s px, %s bytes\n", attr(x, "width") %||% "?", attr(x, "height") %||% "?",
              format(length(unclass(x)))))
  # Interactively (RStudio's plot pane, a graphics window), draw it when
  # the png package can read it.
  if (interactive() && .securer_png_drawable(x) && requireNamespace("png", quietly = TRUE)) {
    img <- tryCatch(png::readPNG(unclass(x)), error = function(e) NULL)
    if (!is.null(img)) {
      grid::grid.newpage()
      grid::grid.raster(img)
    }
  }
  invisible(x)
}

# .securer_png_drawable(x): x's PNG header gives a size of at most 4096
# pixels a side (what the server lets plots be drawn at). A box can
# return raw bytes of class securer_plot as a value: a header claiming a
# huge image would make readPNG() allocate gigabytes here.
.securer_png_drawable <- function(x) {
  b <- unclass(x)
  if (!is.raw(b) || length(b) < 24L || !identical(rawToChar(b[13:16]), "IHDR")) return(FALSE)
  be <- function(r) sum(as.numeric(r) * 256^(3:0))
  w <- be(b[17:20])
  h <- be(b[21:24])
  w >= 1 && h >= 1 && w <= 4096 && h <= 4096
}

# .securer_sanitize(msg) masks what an error message may tell of the host:
# absolute paths, IP addresses, ports and process ids.
.securer_sanitize <- function(msg) {
  msg <- gsub("(^|[^A-Za-z0-9_.:/])(/[^/[:space:]'\",:;)}]+)+/?", "\\1[path]", msg, perl = TRUE)
  msg <- gsub("\\b(?:\\d{1,3}\\.){3}\\d{1,3}(?::\\d{1,5})?\\b", "[host]", msg, perl = TRUE)
  # IPv6: eight groups, or groups around "::" (with a digit, so that
  # pkg::fun stays).
  msg <- gsub("\\[?(?<![\\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\\w:])\\]?(?::\\d{1,5})?", "[host]", msg, perl = TRUE)
  msg <- gsub("\\[?(?<![\\w:])(?=[0-9A-Fa-f:]*\\d)(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?![\\w:])\\]?(?::\\d{1,5})?",
              "[host]", msg, perl = TRUE)
  msg <- gsub("\\bport\\s*:?\\s*\\d+", "port [port]", msg, perl = TRUE, ignore.case = TRUE)
  msg <- gsub("(\\b[A-Za-z][-A-Za-z0-9.]*):\\d{2,5}\\b", "\\1:[port]", msg, perl = TRUE)
  msg <- gsub("\\b(pid|process)(\\s*[:=]?\\s*'?)\\d+'?", "\\1 [pid]", msg, perl = TRUE, ignore.case = TRUE)
  msg
}

# .securer_outcome turns a result into what execute() returns or raises:
# list(value, visible, output, plots) or list(error = <condition>).
# timeout is the one that applied, NULL when it was the server's default.
.securer_outcome <- function(res, timeout, max_output_lines, sanitize_errors) {
  r <- res$result
  clean <- function(m) if (isTRUE(sanitize_errors)) .securer_sanitize(m) else m
  # The code ran in a new R: the session's earlier variables are gone.
  if (isTRUE(r$state_lost)) {
    warning(structure(class = c("securer_state_lost", "warning", "condition"), list(
      message = paste0("securer: the session's R was restarted and its state lost",
                       if (nzchar(r$state_lost_reason %||% "")) paste0(" (", clean(r$state_lost_reason), ")") else "",
                       "; earlier variables are gone"),
      call = NULL)))
  }
  output <- .securer_output(res)
  if (!is.null(max_output_lines) && length(output) > max_output_lines) output <- utils::tail(output, max_output_lines)
  plots <- .securer_plots(r)
  fail <- function(message, classes = character(), traceback = character(), call = NULL) {
    list(error = structure(class = unique(c("securer_execution_error", classes, "error", "condition")),
                           list(message = message, call = call, output = output,
                                traceback = traceback, plots = plots)),
         output = output, plots = plots)
  }
  if (!identical(r$verdict, "ok")) {
    return(switch(r$verdict,
      error = fail(clean(r$error$message %||% "error"),
                   setdiff(unlist(r$error$class), c("error", "condition")),
                   vapply(r$error$traceback %||% list(), function(x) clean(as.character(x)), ""),
                   if (nzchar(r$error$call %||% "")) r$error$call),
      timeout = fail(if (is.null(timeout)) "Execution timed out (the server's default timeout)"
                     else sprintf("Execution timed out after %s second(s)", format(timeout)), "securer_timeout"),
      fail(sprintf("securer: execution ended: %s%s", r$verdict,
                   if (nzchar(r$detail %||% "")) paste0(" (", clean(r$detail), ")") else ""))))
  }
  value <- .securer_decode(r$value)
  # Symbols cannot carry attributes, and a primitive or a global or
  # namespace environment decodes to the host's own object, which must not
  # be changed: their output goes where a NULL value's goes.
  carries <- !is.null(value) && !is.symbol(value) && !is.primitive(value) && !is.environment(value)
  if (carries) {
    if (length(output) > 0) attr(value, "output") <- output
    if (!is.null(plots)) attr(value, "plots") <- plots
  }
  list(value = value, visible = isTRUE(r$visible), output = output, plots = plots, carries = carries,
       printed = if (isTRUE(r$visible)) as.character(r$printed %||% "") else "")
}

# .securer_deliver raises an outcome's error or returns its value; the
# output of a value that cannot carry it (NULL, a symbol, the host's own
# objects) goes to the console when no handler saw it, as R would show it.
.securer_deliver <- function(out, handler_given) {
  .securer_last$output <- out$output %||% character()
  .securer_last$plots <- out$plots
  if (!is.null(out$error)) stop(out$error)
  if (!isTRUE(out$carries) && !handler_given && length(out$output) > 0) writeLines(out$output)
  if (!isTRUE(out$carries) && !is.null(out$plots) && !handler_given) for (p in out$plots) print(p)
  if (out$visible) out$value else invisible(out$value)
}

# The audit log (audit_log =): JSON lines in securer 0.2.0's schema.

# .securer_audit_open(path) checks the path and makes the file (mode 0600,
# its directory created): a symlink or anything but a regular file is
# refused. R opens by name (no O_NOFOLLOW), so a swap between this check
# and a write is not excluded.
.securer_audit_open <- function(path, session_id = basename(tempfile("sess_"))) {
  if (is.null(path)) return(NULL)
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    stop("audit_log must be a single file path", call. = FALSE)
  }
  path <- path.expand(path)
  target <- Sys.readlink(path) # NA when path does not exist
  if (!is.na(target) && nzchar(target)) stop(sprintf("audit_log '%s' is a symbolic link; refusing it", path), call. = FALSE)
  if (file.exists(path)) {
    if (!identical(.securer_file_type(path), "regular")) {
      stop(sprintf("audit_log '%s' is not a regular file; refusing it", path), call. = FALSE)
    }
  } else {
    dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE, mode = "0700")
    old <- Sys.umask("077")
    on.exit(Sys.umask(old))
    if (!file.create(path, showWarnings = FALSE)) stop(sprintf("cannot create audit_log '%s'", path), call. = FALSE)
  }
  Sys.chmod(path, "0600", use_umask = FALSE)
  audit <- new.env(parent = emptyenv())
  audit$path <- path
  audit$session_id <- session_id
  audit
}

# .securer_file_type(path) -> "regular", "other"; base R cannot tell a
# device from a file (file_test("-f", "/dev/null") is TRUE), stat(1) can.
.securer_file_type <- function(path) {
  info <- file.info(path)
  if (isTRUE(info$isdir)) return("other")
  linux <- tryCatch(processx::run("stat", c("-c", "%F", path), error_on_status = FALSE), error = function(e) NULL)
  t <- if (!is.null(linux) && linux$status == 0) linux$stdout else {
    bsd <- tryCatch(processx::run("stat", c("-f", "%HT", path), error_on_status = FALSE), error = function(e) NULL)
    if (!is.null(bsd) && bsd$status == 0) bsd$stdout else ""
  }
  if (grepl("^regular", trimws(tolower(t)))) "regular" else "other"
}

.securer_audit_write <- function(audit, event, ...) {
  if (is.null(audit)) return(invisible())
  rec <- c(list(timestamp = format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC"), event = event,
                session_id = audit$session_id), list(...))
  line <- tryCatch(jsonlite::toJSON(rec, auto_unbox = TRUE, null = "null", force = TRUE, digits = NA),
                   error = function(e) jsonlite::toJSON(rec[1:3], auto_unbox = TRUE))
  cat(line, "\n", file = audit$path, append = TRUE, sep = "")
  invisible()
}

# .securer_hook runs pre_execute_hook: FALSE blocks the execution, an
# error in the hook stops it with the hook's message.
.securer_hook <- function(hook, code) {
  if (is.null(hook)) return(invisible())
  ok <- tryCatch(hook(code), error = function(e) {
    stop(paste("pre_execute_hook error:", conditionMessage(e)), call. = FALSE)
  })
  if (identical(ok, FALSE)) stop("Execution blocked by pre_execute_hook", call. = FALSE)
  invisible()
}

.securer_check_code <- function(code, max_code_length, validate) {
  code <- paste(code, collapse = "\n")
  if (!is.null(max_code_length) && nchar(code) > max_code_length) {
    stop(sprintf("Code too long: %d characters (max_code_length = %d)", nchar(code), as.integer(max_code_length)),
         call. = FALSE)
  }
  if (isTRUE(validate)) {
    v <- validate_code(code)
    if (!v$valid) stop(paste("Code has a syntax error:", v$error), call. = FALSE)
  }
  code
}

.securer_tools_list <- function(tools) {
  lapply(tools, function(t) list(name = t$name, description = t$description, args = .securer_tool_args(t)))
}

#' A persistent sandboxed R session.
SecureSession <- R6::R6Class("SecureSession",
  public = list(
    initialize = function(tools = list(), sandbox = FALSE, limits = NULL, verbose = FALSE,
                          sandbox_strict = FALSE, audit_log = NULL, max_executions = NULL,
                          pre_execute_hook = NULL, sanitize_errors = FALSE) {
      private$sandbox <- .securer_check_sandbox(sandbox)
      private$tool_list <- .securer_check_tools(tools)
      private$verbose <- isTRUE(verbose)
      private$hook <- pre_execute_hook
      private$sanitize <- sanitize_errors
      if (!is.null(max_executions)) {
        if (!is.numeric(max_executions) || length(max_executions) != 1 || is.na(max_executions) || max_executions < 1) {
          stop("max_executions must be a positive number", call. = FALSE)
        }
        private$max_exec <- as.integer(max_executions)
      }
      private$opts <- .securer_options(limits, max_executions)
      private$audit <- .securer_audit_open(audit_log)
      private$link <- .securer_connect(verbose, sandbox)
      private$start()
    },
    execute = function(code, timeout = 30, validate = TRUE, output_handler = NULL, max_tool_calls = NULL,
                       max_code_length = 100000, max_output_lines = NULL) {
      if (is.null(private$name) || isTRUE(private$link$closed)) stop("Session is not running.", call. = FALSE)
      # limits$cpu is the default timeout; a given timeout (NULL: the
      # session's, else the server's default) wins.
      if (missing(timeout)) timeout <- private$opts$timeout %||% timeout
      else if (is.null(timeout)) timeout <- private$opts$timeout
      if (!is.null(private$max_exec) && private$n_exec >= private$max_exec) {
        stop(sprintf("Maximum executions (%d) reached", private$max_exec), call. = FALSE)
      }
      code <- .securer_check_code(code, max_code_length, validate)
      .securer_hook(private$hook, code)
      private$n_exec <- private$n_exec + 1L
      .securer_audit_write(private$audit, "execute_start", code = code)
      .securer_say(private$verbose, "executing ", nchar(code), " characters of code in ", private$name)
      t0 <- Sys.time()
      res <- tryCatch(
        .securer_run(private$link, private$name, "session", code, timeout, private$tool_list,
                     output_handler, max_tool_calls, private$audit, private$verbose),
        error = function(e) {
          .securer_audit_write(private$audit, "execute_error", error = conditionMessage(e),
                               elapsed = as.numeric(Sys.time() - t0, units = "secs"))
          stop(e)
        })
      out <- .securer_outcome(res, timeout, max_output_lines, private$sanitize)
      elapsed <- as.numeric(Sys.time() - t0, units = "secs")
      private$last <- out$output
      private$last_plot_list <- out$plots
      private$last_print <- out$printed %||% ""
      if (is.null(out$error)) {
        .securer_audit_write(private$audit, "execute_complete", elapsed = elapsed)
        .securer_say(private$verbose, "execution done in ", format(round(elapsed, 3)), " s")
      } else {
        .securer_audit_write(private$audit, "execute_error", error = conditionMessage(out$error), elapsed = elapsed)
        .securer_say(private$verbose, "execution failed in ", format(round(elapsed, 3)), " s: ", conditionMessage(out$error))
      }
      .securer_deliver(out, !is.null(output_handler))
    },
    last_output = function() private$last,
    last_plots = function() private$last_plot_list,
    # The last value as the box printed it: the ellmer tool shows the model
    # this text rather than printing the decoded value on the host, where a
    # box-made object's print method would run on the host.
    last_printed = function() private$last_print,
    close = function() {
      was <- private$name
      if (!is.null(private$name) && !isTRUE(private$link$closed)) {
        try(.securer_request(private$link, list(op = "close_session", session = private$name), "closed"), silent = TRUE)
      }
      private$name <- NULL
      if (!is.null(private$link)) .securer_disconnect(private$link)
      if (!is.null(was)) {
        .securer_audit_write(private$audit, "session_close")
        .securer_say(private$verbose, "session ", was, " closed")
      }
      invisible(self)
    },
    restart = function() {
      if (is.null(private$name) || isTRUE(private$link$closed)) stop("Session is not running.", call. = FALSE)
      .securer_request(private$link, list(op = "restart_session", session = private$name), "restarted")
      private$n_exec <- 0L
      .securer_audit_write(private$audit, "session_restart")
      .securer_say(private$verbose, "session ", private$name, " restarted")
      invisible(self)
    },
    is_alive = function() {
      if (is.null(private$name) || isTRUE(private$link$closed)) return(FALSE)
      ok <- tryCatch({
        .securer_request(private$link, list(op = "ping"), "pong")
        TRUE
      }, error = function(e) FALSE)
      ok
    },
    tools = function() .securer_tools_list(private$tool_list),
    format = function(...) {
      running <- !is.null(private$name) && !isTRUE(private$link$closed)
      sprintf("<SecureSession> [%s] pid=%s sandbox=%s tools=%d", if (running) "running" else "stopped",
              if (running && !is.null(private$pid)) format(private$pid) else "NA",
              if (private$sandbox) "container" else "none", length(private$tool_list))
    },
    print = function(...) {
      cat(self$format(), "\n", sep = "")
      if (!private$sandbox) cat("  sandbox: NONE (R on this host, no isolation)\n")
      if (length(private$tool_list)) cat("  tools:", paste(names(private$tool_list), collapse = ", "), "\n")
      invisible(self)
    }
  ),
  private = list(
    link = NULL, name = NULL, pid = NULL, tool_list = NULL, verbose = FALSE, audit = NULL, sandbox = TRUE,
    hook = NULL, sanitize = FALSE, opts = NULL, max_exec = NULL, n_exec = 0L, last = character(),
    last_plot_list = NULL, last_print = "",
    start = function() {
      msg <- list(op = "create_session", tools = .securer_tool_decls(private$tool_list))
      if (!is.null(private$opts)) msg$options <- private$opts
      msg$clamp <- TRUE
      ev <- .securer_create(private$link, msg, "session")
      if (private$sandbox && identical(ev$sandboxed, FALSE)) {
        .securer_disconnect(private$link)
        stop("securer: the server made a session without a sandbox although sandbox = TRUE was asked", call. = FALSE)
      }
      .securer_warn_clamped(ev)
      # A clamped limits$cpu: later executions default to the applied
      # timeout (the requested one is over the server's --max-timeout).
      if (!is.null(private$opts)) private$opts$timeout <- .securer_applied_timeout(ev, private$opts$timeout)
      private$name <- ev$session
      private$pid <- ev$pid
      # The session's default timeout, for executions given none.
      private$link$timeout <- ev$limits$timeout
      # session_id stays the one made at open (0.2.0's sess_<hex>): the
      # server's name (s1, s2, ...) repeats across connections and servers,
      # and sessions sharing a log file must be told apart. tools is always
      # an array (I(): auto_unbox would make one tool a string).
      .securer_audit_write(private$audit, "session_start", sandbox = private$sandbox,
                           tools = I(as.character(names(private$tool_list))))
      .securer_say(private$verbose, "session ", ev$session, " started",
                   if (!is.null(ev$pid)) paste0(" (R pid ", ev$pid, ")") else "")
    },
    finalize = function() self$close()
  )
)

# .securer_create sends a create request; any failure or an interrupt
# while it runs disconnects, so that the server drains and closes what it
# started (a spawned server is asked to finish before it is killed). A
# server older than the clamp member is asked again without it (limits
# over its ceilings are then an error, as before).
.securer_create <- function(link, msg, want) {
  tryCatch(.securer_retry_without(link, msg, want, "clamp"),
           error = function(e) {
             .securer_disconnect(link)
             stop(e)
           },
           interrupt = function(e) {
             .securer_disconnect(link)
             stop("securer: interrupted while the session started; it was closed", call. = FALSE)
           })
}

# .securer_refused_member(e, member): the error is the server refusing a
# member it does not know (an older server).
.securer_refused_member <- function(e, member) {
  m <- conditionMessage(e)
  grepl(sprintf('does not take "%s"', member), m, fixed = TRUE) ||
    grepl(sprintf('unknown object member name "%s"', member), m, fixed = TRUE) ||
    grepl(sprintf('unknown field "%s"', member), m, fixed = TRUE)
}

# .securer_retry_without sends msg; when the server does not know the
# optional member (it refuses members it does not take), again without it.
.securer_retry_without <- function(link, msg, want, member) {
  tryCatch(.securer_request(link, msg, want), error = function(e) {
    if (is.null(msg[[member]]) || !.securer_refused_member(e, member)) stop(e)
    msg[[member]] <- NULL
    .securer_request(link, msg, want)
  })
}

# The server clamped limits over its ceilings (clamp = TRUE): say which, by
# the names the caller used (`limits$memory`, not the wire's memory_bytes).
# The event is parsed without simplification: clamped is a list of strings.
.securer_warn_clamped <- function(ev) {
  cl <- ev$clamped
  if (length(cl) == 0) return(invisible())
  what <- as.character(unlist(cl, use.names = FALSE))
  r_names <- c(memory_bytes = "memory", pids = "nproc", timeout = "cpu", fsize_bytes = "fsize")
  known <- what %in% names(r_names)
  what[known] <- r_names[what[known]]
  warning(sprintf("securer: limits over the server's ceilings were lowered to them: %s",
                  paste(what, collapse = ", ")), call. = FALSE)
}

# .securer_applied_timeout(ev, requested) -> the default timeout to use:
# the server's applied one when it clamped the requested timeout.
.securer_applied_timeout <- function(ev, requested) {
  if ("timeout" %in% unlist(ev$clamped) && is.numeric(ev$limits$timeout)) ev$limits$timeout else requested
}

#' A pool of warm sandboxed sessions.
SecureSessionPool <- R6::R6Class("SecureSessionPool",
  public = list(
    initialize = function(size = 4, tools = list(), sandbox = TRUE, limits = NULL, verbose = FALSE,
                          reset_between_uses = FALSE) {
      sandbox <- .securer_check_sandbox(sandbox)
      if (!is.numeric(size) || length(size) != 1 || is.na(size) || size < 1) {
        stop("Pool size must be at least 1", call. = FALSE)
      }
      if (size > 100) stop("Pool size must be at most 100", call. = FALSE)
      private$tool_list <- .securer_check_tools(tools)
      private$n <- as.integer(size)
      private$sandbox <- sandbox
      private$verbose <- isTRUE(verbose)
      private$link <- .securer_connect(verbose, sandbox)
      # Without the sandbox there are no fresh executions (their clean-up
      # would run on the host): a reset is a new R.
      reset <- if (!isTRUE(reset_between_uses)) "none" else if (sandbox) "fresh" else "restart"
      msg <- list(op = "create_pool", size = private$n, reset = reset,
                  tools = .securer_tool_decls(private$tool_list), clamp = TRUE)
      opts <- .securer_options(limits)
      if (!is.null(opts)) msg$options <- opts
      private$timeout <- opts$timeout
      ev <- tryCatch(.securer_create(private$link, msg, "pool"), error = function(e) {
        m <- conditionMessage(e)
        if (grepl("(limit)", m, fixed = TRUE) || grepl("quota", m)) {
          stop(sprintf(paste0("Pool size %d is over what this securer-runc server allows (%s); its operator ",
                              "raises it with serve --max-sessions-per-client and --max-sessions"), private$n, m),
               call. = FALSE)
        }
        stop(e)
      })
      .securer_warn_clamped(ev)
      private$timeout <- .securer_applied_timeout(ev, private$timeout)
      private$link$timeout <- ev$limits$timeout %||% private$timeout
      private$name <- ev$pool
      .securer_say(private$verbose, "pool ", ev$pool, " of ", private$n, " sessions started")
    },
    execute = function(code, timeout = NULL, acquire_timeout = NULL) {
      if (is.null(private$name) || isTRUE(private$link$closed)) stop("Pool is closed", call. = FALSE)
      code <- .securer_check_code(code, NULL, TRUE)
      extra <- list()
      if (!is.null(acquire_timeout)) {
        if (!is.numeric(acquire_timeout) || length(acquire_timeout) != 1 || is.na(acquire_timeout) || acquire_timeout < 0) {
          stop("acquire_timeout must be a non-negative number of seconds", call. = FALSE)
        }
        extra$acquire_timeout <- as.numeric(acquire_timeout)
      }
      .securer_say(private$verbose, "executing ", nchar(code), " characters of code in pool ", private$name)
      run <- function(extra) .securer_run(private$link, private$name, "pool", code, timeout, private$tool_list,
                                          NULL, NULL, NULL, private$verbose, extra)
      # A server older than acquire_timeout refuses the member: it waits
      # for a session as it always did.
      res <- tryCatch(run(extra), error = function(e) {
        # 0.2.0's text, which its users match.
        if (grepl("(pool_busy)", conditionMessage(e), fixed = TRUE)) stop("All sessions are busy.", call. = FALSE)
        if (is.null(extra$acquire_timeout) || !.securer_refused_member(e, "acquire_timeout")) stop(e)
        run(list())
      })
      out <- .securer_outcome(res, timeout %||% private$timeout, NULL, FALSE)
      private$last <- out$output
      private$last_plot_list <- out$plots
      private$last_print <- out$printed %||% ""
      .securer_deliver(out, FALSE)
    },
    last_output = function() private$last,
    last_printed = function() private$last_print,
    # As a session's: a NULL value (plot(1:10)) cannot carry its plots.
    last_plots = function() private$last_plot_list,
    size = function() if (is.null(private$name)) 0L else private$n,
    available = function() self$status()$idle,
    status = function() {
      if (is.null(private$name) || isTRUE(private$link$closed)) return(list(total = 0L, busy = 0L, idle = 0L, dead = 0L))
      st <- .securer_request(private$link, list(op = "pool_status", pool = private$name), "pool")$status
      list(total = as.integer(st$total), busy = as.integer(st$busy), idle = as.integer(st$idle), dead = as.integer(st$dead))
    },
    close = function() {
      was <- private$name
      if (!is.null(private$name) && !isTRUE(private$link$closed)) {
        try(.securer_request(private$link, list(op = "close_pool", pool = private$name), "closed"), silent = TRUE)
      }
      private$name <- NULL
      if (!is.null(private$link)) .securer_disconnect(private$link)
      if (!is.null(was)) .securer_say(private$verbose, "pool ", was, " closed")
      invisible(self)
    },
    # securer 0.2.0's text exactly (code matches it); print() adds the rest.
    format = function(...) {
      if (is.null(private$name)) return("<SecureSessionPool> [closed]")
      st <- tryCatch(self$status(), error = function(e) list(idle = NA, busy = NA))
      sprintf("<SecureSessionPool> size=%d idle=%s busy=%s", self$size(), format(st$idle), format(st$busy))
    },
    print = function(...) {
      cat(self$format(), "\n", sep = "")
      cat("  sandbox: ", if (private$sandbox) "container" else "NONE (R on this host, no isolation)", "\n", sep = "")
      if (length(private$tool_list)) cat("  tools:", paste(names(private$tool_list), collapse = ", "), "\n")
      invisible(self)
    }
  ),
  private = list(link = NULL, name = NULL, n = 0L, tool_list = NULL, sandbox = TRUE, timeout = NULL,
                 verbose = FALSE, last = character(), last_plot_list = NULL, last_print = "",
                 finalize = function() self$close())
)

# What the last execution in this R process printed and drew, whatever
# its session: a one-shot execute_r() has no session left to ask.
.securer_last <- new.env(parent = emptyenv())

#' The output and plots of the last execution in this R process.
last_output <- function() .securer_last$output %||% character()
#' @rdname last_output
last_plots <- function() .securer_last$plots

#' Run code in a new sandboxed session, then close it.
#'
#' Through a daemon (SECURER_SOCKET, else /run/securer-runc/serve.sock),
#' the code runs as one one-shot request: in a box the daemon keeps warm
#' when it has one (serve --warm), a fresh R state each time.
execute_r <- function(code, tools = list(), timeout = 30, sandbox = TRUE, limits = NULL, verbose = FALSE,
                      validate = TRUE, sandbox_strict = FALSE, audit_log = NULL, files = NULL, output_dir = NULL) {
  if (isTRUE(sandbox) && is.null(audit_log) && length(files) == 0 && is.null(output_dir) && .securer_daemon_there()) {
    out <- .securer_oneshot(code, tools, if (missing(timeout)) NULL else timeout, limits, verbose, validate)
    if (!is.null(out)) return(.securer_deliver(out, FALSE))
  }
  session <- SecureSession$new(tools = tools, sandbox = sandbox, limits = limits, verbose = verbose,
                               sandbox_strict = sandbox_strict, audit_log = audit_log)
  on.exit(session$close())
  # Without a timeout given, limits$cpu applies (else 30 s).
  .securer_with_files(session, files, output_dir,
    if (missing(timeout)) session$execute(code, validate = validate)
    else session$execute(code, timeout = timeout, validate = validate))
}

#' Call fn with a new session, always closing it.
with_secure_session <- function(fn, tools = list(), sandbox = TRUE, ...) {
  session <- SecureSession$new(tools = tools, sandbox = sandbox, ...)
  on.exit(session$close())
  fn(session)
}

# .securer_daemon_there(): a daemon's socket is where the link looks.
.securer_daemon_there <- function() {
  sock <- .securer_socket()
  nzchar(sock) && file.exists(sock)
}

# .securer_oneshot runs code as the daemon's one-shot execute (no session:
# code in, result out, fresh state) and returns its outcome, or NULL when
# the daemon predates one-shots (execute_r then makes a session).
.securer_oneshot <- function(code, tools, timeout, limits, verbose, validate) {
  tool_list <- .securer_check_tools(tools)
  opts <- .securer_options(limits, NULL)
  # As SecureSession$execute: limits$cpu is the default timeout, else 30 s.
  if (is.null(timeout)) timeout <- opts$timeout %||% 30
  code <- .securer_check_code(code, 100000, validate)
  link <- .securer_connect(verbose, TRUE)
  on.exit(.securer_disconnect(link))
  extra <- list(clamp = TRUE)
  if (length(tool_list)) extra$tools <- .securer_tool_decls(tool_list)
  if (!is.null(opts)) extra$options <- opts
  .securer_say(verbose, "executing ", nchar(code), " characters of code as a one-shot on ", link$how)
  res <- tryCatch(.securer_run(link, NULL, "session", code, timeout, tool_list, NULL, NULL, NULL, verbose, extra = extra),
                  error = function(e) {
                    if (grepl("exactly one of session and pool", conditionMessage(e), fixed = TRUE)) return(NULL)
                    stop(e)
                  })
  if (is.null(res)) return(NULL)
  if (length(res$clamped)) .securer_warn_clamped(list(clamped = unique(unlist(res$clamped))))
  .securer_outcome(res, timeout, NULL, FALSE)
}
