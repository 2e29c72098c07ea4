# Tools: each host tool as an R function that sends a tool_call frame and
# waits for its answer.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# A tool as an ordinary R function with the declared formals.
rt$make_tool <- function(name, argnames) {
  f <- function() NULL
  if (length(argnames) > 0) {
    formals(f) <- stats::setNames(rep(list(quote(expr = )), length(argnames)), argnames)
  }
  # The runtime's functions stay uncompiled (see R_ENABLE_JIT above):
  # JIT-compiling them on a first tool call would cost ~45 ms, and in a
  # fresh execution's forked copy it would be paid on every execution.
  body(f) <- bquote({
    jit <- compiler::enableJIT(0L)
    on.exit(compiler::enableJIT(jit))
    .(rt$call_tool)(.(name), environment(), .(argnames))
  })
  environment(f) <- globalenv()
  compiler::cmpfun(f)
}

rt$call_tool <- function(name, env, argnames) {
  if (Sys.getpid() != rt$main_pid) {
    stop("tool '", name, "' cannot be called from a forked process", call. = FALSE)
  }
  present <- argnames[vapply(argnames, function(a) !eval(call("missing", as.name(a)), env), logical(1))]
  encoded <- vapply(present, function(a) rt$.securer_encode(get(a, envir = env)), character(1))
  rt$next_id <- rt$next_id + 1
  id <- rt$next_id
  args <- if (length(present) == 0) "{}" else
    paste0("{", paste0(vapply(present, rt$q, character(1)), ":", encoded, collapse = ","), "}")
  frame <- paste0('{"type":"tool_call","id":', rt$num(id), ',"tool":', rt$q(name), ',"args":', args, "}")
  if (nchar(frame, type = "bytes") > rt$max_frame) {
    stop(sprintf("the arguments of tool '%s' are too large to send (%.0f bytes; the limit is %.0f)",
                 name, nchar(frame, type = "bytes"), rt$max_frame), call. = FALSE)
  }
  # A half-sent frame would corrupt the channel: finish it first.
  suspendInterrupts(rt$send(frame))
  repeat {
    msg <- rt$receive(interruptible = TRUE)
    if (identical(msg$type, "tool_result") && identical(as.numeric(msg$id), as.numeric(id))) break
  }
  if (!is.null(msg$error)) {
    # The tool's own text, unprefixed (code written for securer 0.2.0
    # matches it); the tool's name travels in a field.
    stop(rt$tool_error(msg$error, name, sys.call(-1)))
  }
  rt$.securer_decode(msg$value)
}

rt$tool_error <- function(message, name, call) {
  structure(
    class = c("securer_tool_error", "error", "condition"),
    list(message = message, call = call, tool = name)
  )
}

# securer 0.2.0's way to call a tool by name from the box:
# .securer_call_tool("add", a = 1, b = 2) is add(a = 1, b = 2).
rt$call_tool_by_name <- function(name, ...) {
  if (!is.character(name) || length(name) != 1L || is.na(name) ||
      is.null(rt$tools_env) || !exists(name, envir = rt$tools_env, inherits = FALSE) ||
      identical(name, ".securer_call_tool")) {
    shown <- if (is.character(name) && length(name) == 1L) encodeString(name, quote = '"') else "(not a name)"
    stop(rt$tool_error(paste("unknown tool", shown), if (is.character(name)) name[1] else NA_character_,
                       sys.call(-1)))
  }
  get(name, envir = rt$tools_env, inherits = FALSE)(...)
}

rt$make_call_tool <- function() {
  f <- function(name, ...) NULL
  # Uncompiled runtime code, as in make_tool.
  body(f) <- bquote({
    jit <- compiler::enableJIT(0L)
    on.exit(compiler::enableJIT(jit))
    .(rt$call_tool_by_name)(name, ...)
  })
  environment(f) <- globalenv()
  compiler::cmpfun(f)
}

rt$tools_env <- NULL
rt$install_tools <- function(tools) {
  if (length(tools) == 0) return(invisible())
  e <- attach(NULL, name = "securer:tools")
  for (t in tools) assign(t$name, rt$make_tool(t$name, unlist(t$args)), envir = e)
  rt$tools_env <- e
  assign(".securer_call_tool", rt$make_call_tool(), envir = e)
}

# What the runtime puts on the search path for every session, tools or
# not: install.packages() explains how packages get into the sandbox
# instead of R's misleading "lib is not writable"
# (utils::install.packages still reaches R's own).
rt$install_runtime <- function() {
  e <- attach(NULL, name = "securer:runtime")
  assign("install.packages", function(...) {
    stop(structure(
      class = c("securer_install_refused", "error", "condition"),
      list(message = paste(
        "securer: packages cannot be installed inside the sandbox (read-only, no network).",
        "Add Debian packages to the rootfs instead:",
        'securer-runc rootfs build --packages "r-cran-<name> ..."'), call = NULL)))
  }, envir = e)
}
