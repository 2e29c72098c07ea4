# Tools, code checks and limits: the parts of the interface that need no
# server.

.securer_name_rule <- "^[A-Za-z.][A-Za-z0-9_.]*$"
.securer_arg_types <- c("numeric", "character", "logical", "integer", "list", "data.frame")

#' Define a tool that sandboxed code can call by name.
securer_tool <- function(name, description, fn, args = list()) {
  if (!is.character(name) || length(name) != 1 || !grepl(.securer_name_rule, name)) {
    stop(sprintf("Tool name must match %s", .securer_name_rule), call. = FALSE)
  }
  if (!is.function(fn)) stop("fn must be a function", call. = FALSE)
  if (length(args) > 0 && (is.null(names(args)) || any(!nzchar(names(args))))) {
    stop("args must be a named list mapping argument names to type strings", call. = FALSE)
  }
  for (a in names(args)) {
    if (!grepl(.securer_name_rule, a)) stop(sprintf("Argument name '%s' must match %s", a, .securer_name_rule), call. = FALSE)
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

.securer_check_tools <- function(tools) {
  if (inherits(tools, "securer_tool")) tools <- list(tools)
  if (!is.list(tools) || !all(vapply(tools, inherits, TRUE, "securer_tool"))) {
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
# default: 256).
.securer_options <- function(limits = NULL, max_executions = NULL) {
  o <- list()
  if (!is.null(limits)) {
    bad <- setdiff(names(limits), names(default_limits()))
    if (length(bad) > 0) stop(sprintf("Unknown limits: %s", paste(bad, collapse = ", ")), call. = FALSE)
    if (!is.null(limits$memory)) o$memory_bytes <- as.numeric(limits$memory)
    if (!is.null(limits$nproc)) o$pids <- as.numeric(limits$nproc)
    if (!is.null(limits$cpu)) o$timeout <- as.numeric(limits$cpu)
    if (!is.null(limits$fsize)) o$fsize_bytes <- as.numeric(limits$fsize)
  }
  if (!is.null(max_executions)) o$max_executions <- as.integer(max_executions)
  if (length(o) == 0) NULL else o
}

#' Check code before running it: does it parse, and does it call anything
#' worth a second look?
validate_code <- function(code) {
  code <- paste(code, collapse = "\n")
  exprs <- tryCatch(parse(text = code, keep.source = FALSE), error = function(e) e)
  if (inherits(exprs, "error")) {
    return(list(valid = FALSE, error = conditionMessage(exprs), warnings = character()))
  }
  watched <- c(
    system = "runs a shell command", system2 = "runs a command", shell = "runs a shell command",
    pipe = "runs a shell command", .Call = "calls native code", .C = "calls native code",
    .External = "calls native code", .Internal = "calls R internals", dyn.load = "loads native code",
    socketConnection = "opens a network connection", url = "opens a URL", download.file = "downloads a file",
    Sys.setenv = "changes the environment", unlink = "deletes files", file.remove = "deletes files",
    eval = "evaluates constructed code", assign = "assigns into an environment")
  used <- unique(unlist(lapply(exprs, all.names)))
  hits <- intersect(names(watched), used)
  warnings <- vapply(hits, function(f) sprintf("Code calls %s(): it %s", f, watched[[f]]), "", USE.NAMES = FALSE)
  list(valid = TRUE, error = NULL, warnings = warnings)
}
