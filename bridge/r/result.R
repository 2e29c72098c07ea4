# The result frame and the value it carries.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# result_frame is the one place a result frame is written: every execution
# ends with exactly one, whether the code finished, failed, was interrupted,
# or the runtime itself failed. error is NULL or a list of message, call
# (NULL or text) and class.
rt$result_frame <- function(id, value = '{"type":"NULL"}', visible = FALSE, printed = "",
                            warnings = character(), warnings_dropped = 0,
                            messages = character(), error = NULL, interrupted = FALSE,
                            files = NULL) {
  errjson <- if (is.null(error)) "null" else paste0(
    '{"message":', rt$q(error$message),
    ',"call":', if (is.null(error$call)) "null" else rt$q(error$call),
    ',"class":', rt$qstrs(error$class), "}")
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
    files, "}")
}

# The last value as a wire value. Invisible values (assignments) are
# sent only when small; anything that cannot cross, or would not fit in a
# frame, becomes "unsupported" with a note, never a broken session.
rt$result_value <- function(last) {
  x <- last$value
  if (!isTRUE(last$visible) && utils::object.size(x) > 1e6) return('{"type":"NULL"}')
  v <- tryCatch(rt$.securer_encode(x), error = function(e) e)
  if (inherits(v, "error")) return(rt$unsupported(x, paste("cannot be returned:", conditionMessage(v))))
  n <- nchar(v, type = "bytes")
  if (n > rt$max_value) {
    return(rt$unsupported(x, sprintf("too large to return (%.0f bytes encoded, the limit is %.0f): print it or return less", n, rt$max_value)))
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
