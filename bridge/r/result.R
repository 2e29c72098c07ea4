# The result frame and the value it carries.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# result_frame is the one place a result frame is written: every execution
# ends with exactly one, whether the code finished, failed, was interrupted,
# or the runtime itself failed. error is NULL or a list of message, call
# (NULL or text), class and traceback (character, maybe empty).
# printed_bytes, displays (JSON text of an array) and displays_dropped
# come from the execution.
rt$result_frame <- function(id, value = '{"type":"NULL"}', visible = FALSE, printed = "",
                            warnings = character(), warnings_dropped = 0,
                            messages = character(), error = NULL, interrupted = FALSE,
                            printed_bytes = 0, displays = "[]", displays_dropped = 0,
                            files = NULL) {
  errjson <- if (is.null(error)) "null" else paste0(
    '{"message":', rt$q(error$message),
    ',"call":', if (is.null(error$call)) "null" else rt$q(error$call),
    ',"class":', rt$qstrs(error$class),
    ',"traceback":', rt$qstrs(error$traceback), "}")
  paste0(
    '{"type":"result","id":', rt$num(id),
    ',"value":', value,
    ',"visible":', if (visible) "true" else "false",
    ',"printed":', rt$q(printed),
    ',"warnings":', rt$qstrs(warnings),
    ',"warnings_dropped":', format(warnings_dropped, scientific = FALSE),
    ',"messages":', rt$qstrs(messages),
    ',"error":', errjson,
    ',"interrupted":', if (interrupted) "true" else "false",
    ',"printed_bytes":', rt$num(printed_bytes),
    ',"displays":', displays,
    ',"displays_dropped":', rt$num(displays_dropped),
    files, "}")
}

# The last value as a wire value. Invisible values (assignments) are
# sent only when small and encodable: otherwise NULL (they stay invisible),
# never an error. A visible value that cannot cross, or would not fit in a
# frame, becomes "unsupported" with a note, never a broken session.
rt$result_value <- function(last, max = rt$max_value) {
  x <- last$value
  invisible <- !isTRUE(last$visible)
  if (invisible && utils::object.size(x) > 1e6) return('{"type":"NULL"}')
  v <- tryCatch(rt$.securer_encode(x), error = function(e) e)
  if (inherits(v, "error")) {
    if (invisible) return('{"type":"NULL"}')
    return(rt$unsupported(x, paste("cannot be returned:", conditionMessage(v))))
  }
  # An invisible value the box cannot send as itself (an external
  # pointer...) is not worth a placeholder either.
  if (invisible && startsWith(v, '{"type":"unsupported"')) return('{"type":"NULL"}')
  n <- nchar(v, type = "bytes")
  if (n > max) {
    if (invisible) return('{"type":"NULL"}')
    return(rt$unsupported(x, sprintf("too large to return (%.0f bytes encoded, the limit is %.0f): print it or return less", n, max)))
  }
  v
}
rt$unsupported <- function(x, note) {
  paste0('{"type":"unsupported","class":', rt$qstrs(class(x)), ',"repr":', rt$q(note), "}")
}
# Shortens text for the result frame; the full text went to the streams.
rt$clip <- function(x, n = 8192L) {
  long <- nchar(x, type = "chars", allowNA = TRUE) > n
  long[is.na(long)] <- FALSE
  x[long] <- paste0(substr(x[long], 1L, n), " [... truncated]")
  x
}
