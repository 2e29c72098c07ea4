# Tools: each host tool as an R function that sends a tool_call frame and
# waits for its answer.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# A tool as an ordinary R function with the declared formals. Its body
# is compiled here and gathers the arguments given, in order; the rest
# runs in the runtime's functions below.
#
# The hot path of a call (call_tool and what it calls, up to the answer's
# decoding) runs under the user code's JIT, and stays uncompiled only
# because each of its functions is small and loop-free: R compiles a
# closure with a loop, or a big one, on its second call (~1-45 ms, and in
# a fresh execution's forked copy on every execution), and toggling the
# JIT off around each call cost more than the rest of the call did.
# Anything with a loop runs behind rt$nojit. TestToolCallCompilesNothing
# checks this.
#
# The body calls base R's functions themselves, not their names: it runs
# in the global environment, where tools named c, list or missing (on the
# search path) would be found first.
rt$make_tool <- function(name, argnames) {
  f <- function() NULL
  if (length(argnames) > 0) {
    formals(f) <- stats::setNames(rep(list(quote(expr = )), length(argnames)), argnames)
  }
  syms <- lapply(argnames, as.name)
  given_one <- function(a) as.call(list(base::`!`, as.call(list(base::missing, a))))
  given <- as.call(c(list(base::c), lapply(syms, given_one)))
  values <- as.call(c(list(base::list), lapply(syms, function(a) as.call(list(base::`if`, given_one(a), a)))))
  keys <- paste0(rt$q(argnames), ":")
  body(f) <- as.call(list(rt$call_tool, name, rt$q(name), keys, given, values))
  environment(f) <- globalenv()
  compiler::cmpfun(f)
}

# call_tool sends one tool_call frame and returns the tool's answer.
# given: which of the declared arguments the caller passed; values: their
# values (NULL where not given).
rt$call_tool <- function(name, qname, keys, given, values) {
  frame <- rt$tool_frame(name, qname, keys[given], vapply(values[given], rt$encode_arg, "", USE.NAMES = FALSE))
  # A half-sent frame would corrupt the channel, and the answer must be
  # read whole: only the wait itself takes an interrupt.
  id <- rt$next_id # the frame's id, taken now (not a promise forced later)
  msg <- suspendInterrupts(rt$exchange(frame, id))
  # The tool's own text, unprefixed (code written for securer 0.2.0
  # matches it); the tool's name travels in a field.
  if (!is.null(msg$error)) stop(rt$tool_error(msg$error, name, sys.call(-1)))
  rt$decode_answer(msg$value)
}

# tool_frame is the tool_call frame for the encoded arguments, with the
# call's new id (rt$next_id).
rt$tool_frame <- function(name, qname, keys, args) {
  if (Sys.getpid() != rt$main_pid) rt$forked_call(name)
  # The arguments first: one may call a tool itself (add(add(1, 2), 3)),
  # and that call's id must come before this one's.
  force(args)
  rt$next_id <- rt$next_id + 1
  frame <- paste0('{"type":"tool_call","id":', sprintf("%.0f", rt$next_id), ',"tool":', qname,
                  ',"args":{', paste0(keys, args, collapse = ","), "}}\n")
  if (nchar(frame, type = "bytes") > rt$max_frame + 1) rt$too_large(name, frame)
  frame
}

rt$forked_call <- function(name) {
  stop("tool '", name, "' cannot be called from a forked process", call. = FALSE)
}

# The codec's general paths have loops: they run behind nojit.
rt$encode_arg <- function(x) {
  s <- rt$.securer_encode_plain(x)
  if (is.null(s)) rt$nojit(rt$.securer_encode(x)) else s
}
rt$decode_answer <- function(v) {
  x <- rt$.securer_decode_plain(v)
  if (is.null(x)) rt$nojit(rt$.securer_decode(v)) else x
}

rt$too_large <- function(name, frame) {
  stop(sprintf("the arguments of tool '%s' are too large to send (%.0f bytes; the limit is %.0f)",
               name, nchar(frame, type = "bytes") - 1, rt$max_frame), call. = FALSE)
}

# exchange sends a tool_call frame and returns the tool_result answering
# it. The usual case, the answer alone on the socket, is loop-free; the
# rest (a slow tool, a frame in pieces, more than one line) waits in
# receive's loop.
rt$exchange <- function(frame, id) {
  rt$send_line(frame)
  line <- rt$answer_line()
  msg <- if (!is.null(line)) .Call(rt$json_parse, line, FALSE)
  if (identical(msg$type, "tool_result") && identical(as.numeric(msg$id), id)) return(msg)
  rt$nojit(rt$await_answer(id))
}

# answer_line is the one line that arrived within the first wait, or NULL
# (nothing yet, or anything else: receive sorts it out).
rt$answer_line <- function() {
  if (length(rt$pending) > 0L || !allowInterrupts(rt$wait_readable(rt$answer_slice_ms))) return(NULL)
  lines <- rt$read_lines()
  if (length(lines) == 1L) return(lines)
  rt$pending <- c(rt$pending, lines)
  NULL
}

# await_answer waits for the tool_result of call id, skipping anything
# else (answers to calls an interrupt abandoned).
rt$await_answer <- function(id) {
  repeat {
    msg <- rt$receive(interruptible = TRUE)
    if (identical(msg$type, "tool_result") && identical(as.numeric(msg$id), id)) return(msg)
  }
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
  body(f) <- bquote(.(rt$call_tool_by_name)(name, ...))
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
