# Conditions: errors and warnings shown as Rscript shows them.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

rt$condition_call <- function(cond) {
  cl <- conditionCall(cond)
  # A condition raised at top level carries the runtime's own eval call,
  # which Rscript would not show.
  if (is.null(cl) || identical(cl, quote(eval(expr, globalenv())))) return(NULL)
  paste(deparse(cl, nlines = 1L), collapse = "")
}
rt$format_condition <- function(prefix, cond) {
  cl <- rt$condition_call(cond)
  msg <- conditionMessage(cond)
  if (is.null(cl)) paste0(prefix, ": ", msg) else paste0(prefix, " in ", cl, " : ", msg)
}

# Warnings after a top-level expression, as Rscript prints them: R keeps
# the first getOption("nwarnings") (50) and stops counting there, lists
# up to 10, and past that prints only how many there were.
rt$cmsg <- function(cond) paste(as.character(conditionMessage(cond)), collapse = "\n")
rt$warning_line <- function(w, numbered) {
  cl <- rt$condition_call(w)
  msg <- rt$cmsg(w)
  if (is.null(cl)) return(paste0(msg, " "))
  # R breaks the line when the call and the message's first line are long.
  first <- strsplit(msg, "\n", fixed = TRUE)[[1]][1]
  long <- (if (numbered) 10 else 6) + nchar(cl, type = "w") + nchar(if (is.na(first)) "" else first, type = "w") > 75
  paste0("In ", cl, if (long) " :\n  " else " : ", msg)
}
rt$warning_text <- function(ws, kept) {
  n <- length(ws)
  if (n == 1) return(paste0("Warning message:\n", rt$warning_line(ws[[1]], FALSE), "\n"))
  if (n <= 10) {
    lines <- vapply(ws, rt$warning_line, character(1), numbered = TRUE)
    return(paste0("Warning messages:\n", paste0(seq_len(n), ": ", lines, collapse = "\n"), "\n"))
  }
  if (n < kept) return(sprintf("There were %d warnings (use warnings() to see them)\n", n))
  sprintf("There were %d or more warnings (use warnings() to see the first %d)\n", kept, kept)
}
# warnings() in later code lists what the last expression kept, as in
# R. base's last.warning binding can only be made by R itself (the base
# environment is locked), so it is made once at start by printing a
# deferred warning into the null device, then emptied.
rt$make_last_warning <- function() {
  zz <- file(nullfile(), "w")
  sink(zz, type = "message")
  on.exit({ sink(type = "message"); close(zz) })
  warning("securer: init")
  .Internal(printDeferredWarnings())
  rt$set_last_warning(list())
}
rt$set_last_warning <- function(ws) {
  lw <- lapply(ws, conditionCall)
  names(lw) <- vapply(ws, rt$cmsg, character(1))
  try(assign("last.warning", lw, envir = baseenv()), silent = TRUE)
}
rt$nwarnings <- function() {
  n <- suppressWarnings(as.integer(getOption("nwarnings", 50L))[1])
  if (is.na(n) || n < 1L) 50L else min(n, 10000L)
}
