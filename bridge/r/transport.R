# Transport: the socket to the host, one JSON frame per line.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# The socket is a processx connection driven through processx's native
# routines (main.R loads them without the package's R code, which also
# checks its arguments on every call: a third of a tool call's time in R).
local({
  write_bytes <- rt$px("connection_write_bytes")
  read_lines <- rt$px("connection_read_lines")
  is_eof <- rt$px("connection_is_eof")
  poll <- rt$px("poll")
  rt$write_raw <- function(data) .Call(write_bytes, rt$con, data)
  rt$read_lines <- function() .Call(read_lines, rt$con, -1)
  rt$at_eof <- function() .Call(is_eof, rt$con)
  # TRUE when readable, FALSE when ms passed first (poll code 3, timeout).
  rt$wait_readable <- function(ms = -1L) .Call(poll, list(rt$con), 2L, as.integer(ms))[[1]] != 3L
  rt$pause <- function() .Call(poll, list(rt$con), 2L, 1L)
})

# processx writes what the socket takes at once and hands back the rest
# (it keeps no buffer), and cannot poll for writability: retry the rest.
# A big frame goes out in slices: write_raw hands back a copy of what
# the socket did not take, so retrying the whole rest would copy the
# frame once per socket buffer's worth (quadratic: a 16 MB frame took
# seconds, and under load longer than the execution's timeout).
rt$send_slice <- 1048576L
rt$send <- function(json) rt$send_line(paste0(json, "\n"))
# send_line sends one frame, its newline included. Loop-free for a tool
# call's sake (tools.R): the loops run behind nojit.
rt$send_line <- function(line) {
  # Only the R that runs the execution talks to the host. A forked child
  # (mcparallel) that an interrupt unwound through its copy of the
  # runtime would otherwise answer for it, and its stray result would
  # break the next execution: it ends here instead, without R's exit
  # clean-up (which would remove the parent's temp dir).
  if (Sys.getpid() != rt$main_pid) rt$forked_exit()
  data <- charToRaw(line)
  if (length(data) > rt$send_slice) return(rt$nojit(rt$send_slices(data)))
  left <- rt$write_raw(data)
  if (length(left) > 0L) rt$nojit(rt$send_raw(left))
  invisible()
}
rt$forked_exit <- function() {
  try(parallel:::mcexit(1L), silent = TRUE)
  tools::pskill(Sys.getpid(), tools::SIGKILL)
}
rt$send_slices <- function(data) {
  n <- length(data)
  for (from in seq.int(1L, n, by = rt$send_slice)) {
    rt$send_raw(data[from:min(n, from + rt$send_slice - 1L)])
  }
}
rt$send_raw <- function(data) {
  left <- rt$write_raw(data)
  while (length(left) > 0) {
    rt$pause() # not Sys.sleep: it takes interrupts even when suspended
    left <- rt$write_raw(left)
  }
}

# nojit evaluates expr with R's JIT off: runtime code with loops, reached
# from user code (which runs with the JIT on), would otherwise be
# compiled there, at a cost paid again in every fresh execution's copy.
rt$nojit <- function(expr) {
  jit <- compiler::enableJIT(0L)
  on.exit(compiler::enableJIT(jit))
  expr
}

# JSON strings for text R produced (messages, printed output): invalid
# UTF-8 is escaped as <xx> rather than failing the whole result.
rt$q <- function(x) {
  x <- as.character(x)
  bad <- !is.na(x) & !validUTF8(x)
  if (any(bad)) x[bad] <- iconv(x[bad], "UTF-8", "UTF-8", sub = "byte")
  rt$.securer_json_str(x)
}
# JSON for a whole number (an id): R writes 100000 as 1e+05, which the
# host's decoder rightly refuses for an id.
rt$num <- function(x) format(x, scientific = FALSE, trim = TRUE)
rt$qstrs <- function(x) {
  if (length(x) == 0) return("[]")
  paste0("[", paste(rt$q(x), collapse = ","), "]")
}

rt$answer_slice_ms <- 20L

# An idle box gives back the memory its R freed: once it has waited
# trim_after_ms for the host after a message, malloc_trim returns glibc's
# free pages to the kernel, after a full collection has freed R's unused
# ones in an R that never ran code: 5-10 MiB of an idle session's ~60.
# Only when idle, so no request waits for it, and once per idle spell.
rt$trim_after_ms <- 1000L
rt$trim <- function() {
  # Merged pages stay merged only while nothing writes them: a full
  # collection writes to every page of R's heap. Once offered, the
  # start-up memory is left alone.
  if (rt$merged) return(invisible())
  # A full collection runs the finalizers code registered: only in an R
  # that never ran code, or they would run between executions, outside
  # any time limit. Elsewhere glibc's free pages still go back.
  if (rt$pristine) invisible(gc(verbose = FALSE))
  try(.C("securer_trim", released = 0L, PACKAGE = "securer-mem"), silent = TRUE)
  if (rt$merge_wanted && rt$pristine) rt$merge(TRUE)
}

# Page merging (Host.UnsafeMergePages; SECURITY.md, "Page merging"): a
# warm R that has held nothing of any code's offers its start-up memory
# once, after its first idle trim; what merges is then what every box of
# the same rootfs, runtime and preload list holds at start. Taken back
# (each merged page copied: ~10-30 ms) before this R holds anything of a
# code's, and in a fresh execution's copy before it reads its code.
rt$merge <- function(on) {
  r <- try(.C("securer_merge", on = as.integer(on), count = 0L, err = 0L, PACKAGE = "securer-mem"), silent = TRUE)
  # Marking can fail part-way: take back what was marked too.
  if (on) rt$merged <- TRUE
  if (!on || inherits(r, "try-error") || r$err != 0L) {
    if (on) try(.C("securer_merge", on = 0L, count = 0L, err = 0L, PACKAGE = "securer-mem"), silent = TRUE)
    rt$merged <- FALSE
    if (on) rt$merge_wanted <- FALSE
  }
  invisible()
}
# taint: this R is about to hold what a code chose (its code, its files):
# its memory is never offered again, and what was offered is taken back.
rt$taint <- function() {
  rt$pristine <- FALSE
  if (rt$merged) rt$merge(FALSE)
}

# receive blocks until one message arrives.
# Interrupts (SIGINT from the host at a timeout) are suspended everywhere
# but in user code and in the waits below: the runtime's own bookkeeping
# can never be cut in half. A wait for a tool's answer is interruptible
# (the interrupt unwinds the user code); an idle wait ignores a stray one.
rt$receive <- function(interruptible = FALSE) suspendInterrupts(repeat {
  if (length(rt$pending) > 0) {
    line <- rt$pending[1]
    rt$pending <- rt$pending[-1]
    return(.Call(rt$json_parse, line, FALSE))
  }
  if (interruptible) {
    # In short slices: within one long poll processx looks at interrupts
    # only every 200 ms, which held a timeout's result that long past the
    # deadline while R waited for a tool. A short poll looks at none, and
    # R's own check comes every thousand evaluations: Sys.sleep(0) takes
    # a pending interrupt at once.
    allowInterrupts(repeat {
      if (rt$wait_readable(rt$answer_slice_ms)) break
      Sys.sleep(0)
    })
  } else {
    if (rt$trim_due) {
      rt$trim_due <- FALSE
      idle <- !tryCatch(allowInterrupts(rt$wait_readable(rt$trim_after_ms)), interrupt = function(i) TRUE)
      if (idle) rt$trim()
    }
    tryCatch(allowInterrupts(rt$wait_readable()), interrupt = function(i) NULL)
  }
  lines <- rt$read_lines()
  # Readable but nothing to read: the host closed the connection.
  if (length(lines) == 0 && rt$at_eof()) quit(save = "no", status = 0)
  rt$pending <- c(rt$pending, lines)
})
