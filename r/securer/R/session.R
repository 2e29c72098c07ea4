# SecureSession and SecureSessionPool: sessions of securer-runc's
# container engine, driven over its session service.

.securer_check_sandbox <- function(sandbox) {
  if (!is.logical(sandbox) || length(sandbox) != 1 || is.na(sandbox)) {
    stop("sandbox must be TRUE or FALSE", call. = FALSE)
  }
  sandbox
}

.securer_audit <- function(path, event, ...) {
  if (is.null(path)) return(invisible())
  rec <- c(list(time = format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC"), event = event), list(...))
  cat(jsonlite::toJSON(rec, auto_unbox = TRUE, null = "null"), "\n", file = path, append = TRUE, sep = "")
}

# .securer_lines(text, handler) calls handler on each complete line of
# text and returns what is left after the last newline.
.securer_lines <- function(text, handler) {
  parts <- strsplit(text, "\n", fixed = TRUE)[[1]]
  complete <- if (endsWith(text, "\n")) parts else parts[-length(parts)]
  for (l in complete) handler(l)
  if (endsWith(text, "\n") || length(parts) == 0) "" else parts[length(parts)]
}

# .securer_answer(link, ev, tools, ...) runs the tool R called, here in the
# calling process, and sends its value (typed) or its error back.
.securer_answer <- function(link, ev, tools, n_calls, max_tool_calls, audit_log) {
  reply <- list(op = "tool_result", call = ev$call)
  tool <- tools[[ev$tool]]
  .securer_audit(audit_log, "tool_call", tool = ev$tool)
  if (!is.null(max_tool_calls) && n_calls > max_tool_calls) {
    reply$error <- sprintf("Maximum tool calls (%d) exceeded", as.integer(max_tool_calls))
  } else if (is.null(tool)) {
    reply$error <- sprintf("unknown tool '%s'", ev$tool)
  } else {
    args <- lapply(ev$args, .securer_decode)
    value <- tryCatch(list(ok = do.call(tool$fn, args)), error = function(e) list(err = conditionMessage(e)))
    if (!is.null(value$err)) {
      reply$error <- value$err
    } else {
      reply$typed <- structure(.securer_encode(value$ok), class = "json")
    }
  }
  .securer_send(link, reply)
}

# .securer_run sends one execute request and serves its events until the
# result: output to the handler, tool calls answered here. An interrupt
# (or any error) on this side cancels the execution.
.securer_run <- function(link, target, kind, code, timeout, tools, output_handler, max_tool_calls, audit_log) {
  id <- .securer_new_id(link)
  msg <- list(op = "execute", id = id, code = code)
  msg[[kind]] <- target
  if (!is.null(timeout)) msg$timeout <- as.numeric(timeout)
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
  out <- character()
  partial <- ""
  calls <- 0L
  repeat {
    ev <- .securer_read(link)
    if (!identical(ev$id, id)) next
    switch(ev$type,
      stdout = , stderr = {
        out <- c(out, ev$text)
        if (!is.null(output_handler)) partial <- .securer_lines(paste0(partial, ev$text), output_handler)
      },
      tool_call = {
        calls <- calls + 1L
        .securer_answer(link, ev, tools, calls, max_tool_calls, audit_log)
      },
      result = {
        done <- TRUE
        if (nzchar(partial) && !is.null(output_handler)) output_handler(partial)
        return(list(result = ev$result, output = paste(out, collapse = "")))
      },
      error = {
        done <- TRUE
        stop(sprintf("securer: %s (%s)", ev$error$message, ev$error$code), call. = FALSE)
      })
  }
}

# .securer_value turns a result into what execute() returns or raises;
# timeout is the one that applied (the call's, else the session's or
# pool's limits$cpu), NULL when it was the server's default.
.securer_value <- function(res, timeout, max_output_lines, sanitize_errors) {
  r <- res$result
  clean <- function(m) if (isTRUE(sanitize_errors)) gsub("(/[A-Za-z0-9._-]+)+", "<path>", m) else m
  # The code ran in a new R: the session's earlier variables are gone.
  if (isTRUE(r$state_lost)) {
    warning(structure(class = c("securer_state_lost", "warning", "condition"), list(
      message = paste0("securer: the session's R was restarted and its state lost",
                       if (nzchar(r$state_lost_reason %||% "")) paste0(" (", clean(r$state_lost_reason), ")") else "",
                       "; earlier variables are gone"),
      call = NULL)))
  }
  switch(r$verdict,
    ok = NULL,
    error = stop(clean(r$error$message), call. = FALSE),
    timeout = stop(if (is.null(timeout)) "Execution timed out (the server's default timeout)"
                   else sprintf("Execution timed out after %s second(s)", format(timeout)), call. = FALSE),
    stop(sprintf("securer: execution ended: %s%s", r$verdict,
                 if (nzchar(r$detail %||% "")) paste0(" (", clean(r$detail), ")") else ""), call. = FALSE))
  value <- .securer_decode(r$value)
  # What the code printed, without the auto-print of the value returned.
  output <- res$output
  if (isTRUE(r$visible) && nzchar(r$printed %||% "")) {
    tail <- paste0(r$printed, "\n")
    if (endsWith(output, tail)) output <- substr(output, 1, nchar(output) - nchar(tail))
  }
  lines <- if (nzchar(output)) strsplit(sub("\n$", "", output), "\n", fixed = TRUE)[[1]] else character()
  if (!is.null(max_output_lines) && length(lines) > max_output_lines) lines <- utils::tail(lines, max_output_lines)
  if (length(lines) > 0 && !is.null(value)) attr(value, "output") <- lines
  if (isTRUE(r$visible)) value else invisible(value)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

#' A persistent sandboxed R session.
SecureSession <- R6::R6Class("SecureSession",
  public = list(
    initialize = function(tools = list(), sandbox = FALSE, limits = NULL, verbose = FALSE,
                          sandbox_strict = FALSE, audit_log = NULL, max_executions = NULL,
                          pre_execute_hook = NULL, sanitize_errors = FALSE) {
      private$sandbox <- .securer_check_sandbox(sandbox)
      private$tool_list <- .securer_check_tools(tools)
      private$verbose <- verbose
      private$audit_log <- audit_log
      private$hook <- pre_execute_hook
      private$sanitize <- sanitize_errors
      private$opts <- .securer_options(limits, max_executions)
      private$link <- .securer_connect(verbose, sandbox)
      private$start()
    },
    execute = function(code, timeout = 30, validate = TRUE, output_handler = NULL, max_tool_calls = NULL,
                       max_code_length = 100000, max_output_lines = NULL) {
      code <- paste(code, collapse = "\n")
      if (nchar(code) > max_code_length) {
        stop(sprintf("Code exceeds the maximum length of %d characters", as.integer(max_code_length)), call. = FALSE)
      }
      if (isTRUE(validate)) {
        v <- validate_code(code)
        if (!v$valid) stop(paste("Syntax error:", v$error), call. = FALSE)
      }
      if (!is.null(private$hook) && identical(private$hook(code), FALSE)) {
        stop("Execution blocked by pre_execute_hook", call. = FALSE)
      }
      if (is.null(private$name)) stop("securer: the session is closed", call. = FALSE)
      .securer_audit(private$audit_log, "execute", code_chars = nchar(code))
      res <- .securer_run(private$link, private$name, "session", code, timeout, private$tool_list,
                          output_handler, max_tool_calls, private$audit_log)
      .securer_audit(private$audit_log, "result", verdict = res$result$verdict)
      .securer_value(res, timeout %||% private$opts$timeout, max_output_lines, private$sanitize)
    },
    close = function() {
      if (!is.null(private$name) && !isTRUE(private$link$closed)) {
        try(.securer_request(private$link, list(op = "close_session", session = private$name), "closed"), silent = TRUE)
      }
      private$name <- NULL
      .securer_disconnect(private$link)
      invisible(self)
    },
    restart = function() {
      if (is.null(private$name)) stop("securer: the session is closed", call. = FALSE)
      .securer_request(private$link, list(op = "restart_session", session = private$name), "restarted")
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
    tools = function() {
      unname(lapply(private$tool_list, function(t) list(name = t$name, args = .securer_tool_args(t))))
    },
    print = function(...) {
      cat("<SecureSession>", if (self$is_alive()) "alive" else "closed",
          if (private$sandbox) "| sandbox: container (securer-runc) | tools:"
          else "| sandbox: NONE (R on this host) | tools:",
          if (length(private$tool_list)) paste(names(private$tool_list), collapse = ", ") else "none", "\n")
      invisible(self)
    }
  ),
  private = list(
    link = NULL, name = NULL, tool_list = NULL, verbose = FALSE, audit_log = NULL, sandbox = TRUE,
    hook = NULL, sanitize = FALSE, opts = NULL,
    start = function() {
      msg <- list(op = "create_session", tools = .securer_tool_decls(private$tool_list))
      if (!is.null(private$opts)) msg$options <- private$opts
      ev <- tryCatch(.securer_request(private$link, msg, "session"), error = function(e) {
        .securer_disconnect(private$link)
        stop(e)
      })
      if (private$sandbox && identical(ev$sandboxed, FALSE)) {
        .securer_disconnect(private$link)
        stop("securer: the server made a session without a sandbox although sandbox = TRUE was asked", call. = FALSE)
      }
      private$name <- ev$session
      .securer_audit(private$audit_log, "session_start", session = ev$session)
    },
    finalize = function() self$close()
  )
)

#' A pool of warm sandboxed sessions.
SecureSessionPool <- R6::R6Class("SecureSessionPool",
  public = list(
    initialize = function(size = 4, tools = list(), sandbox = TRUE, limits = NULL, verbose = FALSE,
                          reset_between_uses = FALSE) {
      sandbox <- .securer_check_sandbox(sandbox)
      if (!is.numeric(size) || length(size) != 1 || size < 1) stop("size must be a positive number", call. = FALSE)
      private$tool_list <- .securer_check_tools(tools)
      private$n <- as.integer(size)
      private$sandbox <- sandbox
      private$link <- .securer_connect(verbose, sandbox)
      # Without the sandbox there are no fresh executions (their clean-up
      # would run on the host): a reset is a new R.
      reset <- if (!isTRUE(reset_between_uses)) "none" else if (sandbox) "fresh" else "restart"
      msg <- list(op = "create_pool", size = private$n, reset = reset,
                  tools = .securer_tool_decls(private$tool_list))
      opts <- .securer_options(limits)
      if (!is.null(opts)) msg$options <- opts
      private$timeout <- opts$timeout
      ev <- tryCatch(.securer_request(private$link, msg, "pool"), error = function(e) {
        .securer_disconnect(private$link)
        stop(e)
      })
      private$name <- ev$pool
    },
    execute = function(code, timeout = NULL, acquire_timeout = NULL) {
      if (is.null(private$name)) stop("securer: the pool is closed", call. = FALSE)
      code <- paste(code, collapse = "\n")
      v <- validate_code(code)
      if (!v$valid) stop(paste("Syntax error:", v$error), call. = FALSE)
      res <- .securer_run(private$link, private$name, "pool", code, timeout, private$tool_list, NULL, NULL, NULL)
      .securer_value(res, timeout %||% private$timeout, NULL, FALSE)
    },
    size = function() private$n,
    available = function() self$status()$idle,
    status = function() {
      if (is.null(private$name)) return(list(total = 0L, busy = 0L, idle = 0L, dead = 0L))
      st <- .securer_request(private$link, list(op = "pool_status", pool = private$name), "pool")$status
      list(total = as.integer(st$total), busy = as.integer(st$busy), idle = as.integer(st$idle), dead = as.integer(st$dead))
    },
    close = function() {
      if (!is.null(private$name) && !isTRUE(private$link$closed)) {
        try(.securer_request(private$link, list(op = "close_pool", pool = private$name), "closed"), silent = TRUE)
      }
      private$name <- NULL
      .securer_disconnect(private$link)
      invisible(self)
    },
    print = function(...) {
      cat("<SecureSessionPool> size", private$n, if (private$sandbox) "| sandbox: container" else "| sandbox: NONE",
          if (is.null(private$name)) "(closed)" else "", "\n")
      invisible(self)
    }
  ),
  private = list(link = NULL, name = NULL, n = 0L, tool_list = NULL, sandbox = TRUE, timeout = NULL,
                 finalize = function() self$close())
)

#' Run code in a new sandboxed session, then close it.
execute_r <- function(code, tools = list(), timeout = 30, sandbox = TRUE, limits = NULL, verbose = FALSE,
                      validate = TRUE, sandbox_strict = FALSE, audit_log = NULL, files = NULL, output_dir = NULL) {
  session <- SecureSession$new(tools = tools, sandbox = sandbox, limits = limits, verbose = verbose,
                               sandbox_strict = sandbox_strict, audit_log = audit_log)
  on.exit(session$close())
  .securer_with_files(session, files, output_dir, session$execute(code, timeout = timeout, validate = validate))
}

#' Call fn with a new session, always closing it.
with_secure_session <- function(fn, tools = list(), sandbox = TRUE, ...) {
  session <- SecureSession$new(tools = tools, sandbox = sandbox, ...)
  on.exit(session$close())
  fn(session)
}

#' An ellmer tool that runs R code in a sandbox (needs the ellmer package).
as_ellmer_tool <- function(session = NULL, tools = list(), sandbox = TRUE, limits = NULL, timeout = 30) {
  if (!requireNamespace("ellmer", quietly = TRUE)) {
    stop("as_ellmer_tool() needs the ellmer package", call. = FALSE)
  }
  if (is.null(session)) session <- SecureSession$new(tools = tools, sandbox = sandbox, limits = limits)
  run <- function(code) {
    out <- tryCatch(session$execute(code, timeout = timeout), error = function(e) paste("Error:", conditionMessage(e)))
    paste(utils::capture.output(print(out)), collapse = "\n")
  }
  ellmer::tool(run, "Execute R code in a secure sandbox and return the printed result.",
               arguments = list(code = ellmer::type_string("R code to execute")), name = "execute_r_code")
}
