# Tools, code checks and limits: the parts of the interface that need no
# server.

.securer_name_rule <- "^[A-Za-z.][A-Za-z0-9_.]*$"
.securer_arg_types <- c("numeric", "character", "logical", "integer", "list", "data.frame")

#' Define a tool that sandboxed code can call by name.
securer_tool <- function(name, description, fn, args = list()) {
  if (!is.character(name) || length(name) != 1 || is.na(name) || !grepl(.securer_name_rule, name)) {
    stop(sprintf("Tool name must be a valid R identifier (matching %s)", .securer_name_rule), call. = FALSE)
  }
  if (!is.function(fn)) stop("fn must be a function", call. = FALSE)
  if (length(args) > 0 && (is.null(names(args)) || any(!nzchar(names(args))))) {
    stop("args must be a named list mapping argument names to type strings", call. = FALSE)
  }
  for (a in names(args)) {
    if (!grepl(.securer_name_rule, a)) {
      stop(sprintf("Argument name '%s' must be a valid R identifier (matching %s)", a, .securer_name_rule), call. = FALSE)
    }
    type <- args[[a]]
    if (!is.null(type) && !identical(type, "") && !(is.character(type) && length(type) == 1 && type %in% .securer_arg_types)) {
      stop(sprintf("Argument '%s' has unknown type '%s'; use one of: %s", a, paste(format(type), collapse = " "),
                   paste(.securer_arg_types, collapse = ", ")), call. = FALSE)
    }
  }
  structure(list(name = name, description = as.character(description), fn = fn, args = args),
            class = "securer_tool")
}

#' @export
print.securer_tool <- function(x, ...) {
  cat(sprintf("<securer_tool> %s: %s (%d arg%s)\n", x$name, x$description,
              length(.securer_tool_args(x)), if (length(.securer_tool_args(x)) == 1) "" else "s"))
  invisible(x)
}

# .securer_tool_args(tool) -> named character: argument name -> type ("" for
# unchecked), in call order: the function's formals, typed by args.
.securer_tool_args <- function(tool) {
  formal <- setdiff(names(formals(tool$fn)), "...")
  extra <- setdiff(names(tool$args), formal)
  if (length(extra) > 0) {
    stop(sprintf("Tool '%s': args names %s that fn does not take", tool$name, paste(extra, collapse = ", ")), call. = FALSE)
  }
  types <- vapply(formal, function(a) {
    t <- tool$args[[a]]
    if (is.null(t)) "" else t
  }, "")
  names(types) <- formal
  types
}

#' The class of securer_tool() objects, and a constructor of them with
#' securer 0.2.0's signature.
securer_tool_class <- function(name = character(0), description = character(0), fn = function() NULL, args = list()) {
  securer_tool(name, description, fn, args)
}

# .securer_check_tools accepts a list of securer_tool() objects, and (as
# securer 0.2.0 did, deprecated) a named list of plain functions, which
# become tools with unchecked arguments.
.securer_check_tools <- function(tools) {
  if (inherits(tools, "securer_tool")) tools <- list(tools)
  if (!is.list(tools)) stop("tools must be a list of securer_tool() objects", call. = FALSE)
  legacy <- vapply(tools, function(t) is.function(t) && !inherits(t, "securer_tool"), TRUE)
  if (any(legacy)) {
    nm <- names(tools)
    if (is.null(nm) || any(!nzchar(nm[legacy]))) {
      stop("tools given as plain functions must be a named list", call. = FALSE)
    }
    .Deprecated(msg = paste0("Passing tools as a named list of functions is deprecated; ",
                             "use securer_tool() to define each tool (with argument types)."))
    for (i in which(legacy)) tools[[i]] <- securer_tool(nm[[i]], "", tools[[i]])
  }
  if (!all(vapply(tools, inherits, TRUE, "securer_tool"))) {
    stop("tools must be a list of securer_tool() objects", call. = FALSE)
  }
  names(tools) <- vapply(tools, function(t) t$name, "")
  if (anyDuplicated(names(tools))) stop("Two tools have the same name", call. = FALSE)
  tools
}

.securer_tool_decls <- function(tools) {
  unname(lapply(tools, function(t) {
    types <- .securer_tool_args(t)
    list(name = t$name, description = t$description,
         args = unname(lapply(names(types), function(a) list(name = a, type = unname(types[[a]])))))
  }))
}

#' The default resource limits.
default_limits <- function() {
  list(cpu = 60, memory = 512 * 1024^2, fsize = 50 * 1024^2, nproc = 50, nofile = 256)
}

# .securer_options(limits, ...) -> the session options of the protocol.
# memory and nproc map to the container's cgroup; cpu (seconds, though
# named for CPU time in 0.2.0) to the default wall-clock timeout; fsize
# to the largest file R may write (fsize_bytes, at most the operator's;
# by default the size of /tmp); nofile is the operator's (securer-runc's
# default: 256); stack is accepted (0.2.0's ulimit -s) and left to the
# runtime's default.
.securer_options <- function(limits = NULL, max_executions = NULL) {
  o <- list()
  if (!is.null(limits)) {
    valid <- c(names(default_limits()), "stack")
    bad <- setdiff(names(limits), valid)
    if (length(bad) > 0) {
      stop(sprintf("Unknown limits: %s. Valid names: %s", paste(bad, collapse = ", "), paste(valid, collapse = ", ")),
           call. = FALSE)
    }
    for (n in names(limits)) {
      v <- limits[[n]]
      if (!is.numeric(v) || length(v) != 1 || is.na(v) || v <= 0) {
        stop(sprintf("Limit '%s' must be a single positive number, got: %s", n, paste(deparse(v), collapse = " ")),
             call. = FALSE)
      }
    }
    if (!is.null(limits$memory)) o$memory_bytes <- as.numeric(limits$memory)
    if (!is.null(limits$nproc)) o$pids <- as.numeric(limits$nproc)
    if (!is.null(limits$cpu)) o$timeout <- as.numeric(limits$cpu)
    if (!is.null(limits$fsize)) o$fsize_bytes <- as.numeric(limits$fsize)
  }
  if (!is.null(max_executions)) o$max_executions <- as.integer(max_executions)
  if (length(o) == 0) NULL else o
}

#' Check code before running it: does it parse, and does it call anything
#' the sandbox may restrict?
validate_code <- function(code) {
  if (!is.character(code) || length(code) != 1 || is.na(code)) {
    stop("`code` must be a single character string", call. = FALSE)
  }
  exprs <- tryCatch(parse(text = code, keep.source = FALSE), error = function(e) e)
  if (inherits(exprs, "error")) {
    return(list(valid = FALSE, error = conditionMessage(exprs), warnings = character()))
  }
  # securer 0.2.0's set (its documentation names system(), .Call(),
  # dyn.load() and socketConnection()): calls (a name followed by "(") in
  # the text, not part of a longer name.
  watched <- c("system", "system2", "shell", ".Internal", "Sys.setenv",
               ".Call", ".C", ".Fortran", ".External", "dyn.load", "pipe",
               "processx::run", "callr::r", "socketConnection", "url", "do.call")
  hit <- vapply(watched, function(f) {
    grepl(paste0("(^|[^A-Za-z0-9._])", gsub(".", "\\.", f, fixed = TRUE), "[[:space:]]*\\("), code)
  }, TRUE)
  warnings <- sprintf("Code contains call to `%s()` which may be restricted by the sandbox", watched[hit])
  list(valid = TRUE, error = NULL, warnings = warnings)
}

# ellmer: a tool that runs R code in a sandbox.

# .securer_truncate(text, max_chars) keeps the head and the tail of a long
# text, saying how many lines were left out between them.
.securer_truncate <- function(text, max_chars = 20000) {
  if (nchar(text) <= max_chars) return(text)
  lines <- strsplit(text, "\n", fixed = TRUE)[[1]]
  budget <- max_chars %/% 2
  head <- character()
  used <- 0
  for (l in lines) {
    if (used + nchar(l) + 1 > budget) break
    head <- c(head, l)
    used <- used + nchar(l) + 1
  }
  tail <- character()
  used <- 0
  for (l in rev(lines[(length(head) + 1):length(lines)])) {
    if (used + nchar(l) + 1 > budget) break
    tail <- c(l, tail)
    used <- used + nchar(l) + 1
  }
  omitted <- length(lines) - length(head) - length(tail)
  # One line longer than the budget: cut it by characters.
  if (length(head) == 0 && length(tail) == 0) {
    return(paste0(substr(text, 1, budget), "\n[... ", nchar(text) - 2 * budget, " characters omitted ...]\n",
                  substr(text, nchar(text) - budget + 1, nchar(text))))
  }
  paste(c(head, sprintf("[... %d lines omitted ...]", omitted), tail), collapse = "\n")
}

# .securer_tool_text(outcome) -> what the model reads: the printed output,
# the value as R prints it, and on an error the message and the head of
# the traceback. outcome: list(value, visible, output, printed) or
# list(error, output); without printed, the value is printed here.
.securer_tool_text <- function(outcome, max_chars = 20000, traceback_lines = 10) {
  parts <- outcome$output
  if (!is.null(outcome$error)) {
    e <- outcome$error
    parts <- c(parts, paste("Error:", conditionMessage(e)))
    tb <- e$traceback
    if (length(tb) > 0) {
      parts <- c(parts, "Traceback (innermost last):",
                 paste0("  ", utils::head(tb, traceback_lines)),
                 if (length(tb) > traceback_lines) sprintf("  [... %d more calls]", length(tb) - traceback_lines))
    }
  } else if (isTRUE(outcome$visible) && !is.null(outcome$printed)) {
    # The value as the box printed it: printing the decoded value here
    # would run host methods on a box-made object (an R6-classed list's
    # own print function, say) in the host's R.
    if (nzchar(outcome$printed)) parts <- c(parts, outcome$printed)
  } else if (isTRUE(outcome$visible)) {
    v <- outcome$value
    attr(v, "output") <- NULL
    attr(v, "plots") <- NULL
    parts <- c(parts, utils::capture.output(print(v)))
  }
  if (length(parts) == 0) parts <- "(no output)"
  .securer_truncate(paste(parts, collapse = "\n"), max_chars)
}

# .securer_tool_content(text, plots, content) -> the tool's answer: the
# text alone, or, when there are plots and content (constructors of ellmer
# content: list(text = function(text), image = function(type, data))) is
# given, a list of the text and one image per plot, every element a content
# object: ellmer shows a tool's list as content only when all of it is
# content (a bare string among images is sent as one JSON value instead).
.securer_tool_content <- function(text, plots = NULL, content = NULL) {
  if (length(plots) == 0 || is.null(content)) {
    if (length(plots) > 0) text <- paste0(text, sprintf("\n[%d plot(s) drawn; not shown]", length(plots)))
    return(text)
  }
  c(list(content$text(text)),
    lapply(plots, function(p) content$image(type = "image/png", data = jsonlite::base64_enc(unclass(p)))))
}

# The ellmer release that takes images in tool results (its PR #735).
.securer_ellmer_images <- "0.4.0"

.securer_ellmer_content_fns <- function() {
  ns <- asNamespace("ellmer")
  ok <- utils::packageVersion("ellmer") >= .securer_ellmer_images &&
    exists("ContentImageInline", envir = ns, inherits = FALSE) &&
    exists("ContentText", envir = ns, inherits = FALSE)
  if (!ok) return(NULL)
  image <- get("ContentImageInline", envir = ns)
  text <- get("ContentText", envir = ns)
  list(text = function(t) text(text = t), image = function(type, data) image(type = type, data = data))
}

#' An ellmer tool that runs R code in a sandbox (needs the ellmer package).
as_ellmer_tool <- function(session = NULL, tools = list(), sandbox = TRUE, limits = NULL, timeout = 30) {
  if (!requireNamespace("ellmer", quietly = TRUE)) {
    stop("as_ellmer_tool() needs the ellmer package", call. = FALSE)
  }
  if (is.null(session)) session <- SecureSession$new(tools = tools, sandbox = sandbox, limits = limits)
  content <- .securer_ellmer_content_fns()
  run <- function(code) {
    # A handler keeps the output off this console; the tool returns it.
    out <- tryCatch({
      v <- withVisible(session$execute(code, timeout = timeout, output_handler = function(line) NULL))
      list(value = v$value, visible = v$visible, output = session$last_output(),
           printed = session$last_printed(), plots = session$last_plots())
    }, error = function(e) list(error = e, output = e$output, plots = e$plots))
    .securer_tool_content(.securer_tool_text(out), out$plots, content)
  }
  ellmer::tool(run, "Execute R code in a secure sandbox and return the printed output, the result and any plots.",
               arguments = list(code = ellmer::type_string("R code to execute")), name = "execute_r_code")
}

#' Deprecated: use as_ellmer_tool().
securer_as_ellmer_tool <- function(...) {
  .Deprecated("as_ellmer_tool")
  as_ellmer_tool(...)
}
