# Execution: code parsed and run at top level, Rscript-style, with its
# output, warnings and messages collected for the result frame.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# An interrupt that arrived after the last execution's code had ended
# belongs to it, not to the next one: deliver and drop it.
rt$drop_stale_interrupt <- function() {
  tryCatch(allowInterrupts(Sys.sleep(0)), interrupt = function(i) NULL)
}

rt$execute <- function(id, code, stale_interrupt, plots = NULL) {
  if (isTRUE(stale_interrupt)) rt$drop_stale_interrupt()
  # The result carries the first 100 warnings and messages and counts
  # the rest: kept in place, never grown past 100, so that a flood of
  # conditions costs linear time.
  warnings_kept <- character()
  warnings_total <- 0
  messages_kept <- character()
  messages_total <- 0
  last <- list(value = NULL, visible = FALSE)
  printed <- ""
  printed_bytes <- 0
  rt$error_calls <- NULL
  err <- NULL
  interrupted <- FALSE
  ws <- list()
  wn <- 0L
  kept <- 50L
  # Plots are a bonus: trouble with them never costs the result.
  plot_state <- tryCatch(rt$plots_begin(plots), error = function(e) NULL)
  tryCatch({
    exprs <- tryCatch(parse(text = code, keep.source = FALSE), error = function(e) {
      e$call <- NULL
      class(e) <- c("securer_parse_error", class(e))
      stop(e)
    })
    for (expr in exprs) {
      ws <- list()
      wn <- 0L
      kept <- rt$nwarnings()
      withCallingHandlers(allowInterrupts({
        compiler::enableJIT(rt$user_jit)
        last <- tryCatch(withVisible(eval(expr, globalenv())),
                         finally = compiler::enableJIT(0L))
        if (last$visible) {
          out <- utils::capture.output(print(last$value))
          printed <- paste(out, collapse = "\n")
          # What cat() writes: the lines and a newline after each.
          printed_bytes <- sum(nchar(out, type = "bytes")) + length(out)
          if (length(out) > 0) cat(out, sep = "\n")
        } else {
          printed <- ""
          printed_bytes <- 0
        }
      }), warning = function(w) {
        # What is kept is clipped: a hundred 10 MB warnings must not
        # hold a gigabyte (the streams got the text when it was printed).
        if (wn < kept) {
          wn <<- wn + 1L
          cw <- w
          cw$message <- rt$clip(conditionMessage(w))
          ws[[wn]] <<- cw
        }
        warnings_total <<- warnings_total + 1
        if (warnings_total <= 100) warnings_kept[[warnings_total]] <<- rt$clip(rt$cmsg(w))
        invokeRestart("muffleWarning")
      }, message = function(m) {
        messages_total <<- messages_total + 1
        if (messages_total <= 100) messages_kept[[messages_total]] <<- rt$clip(rt$cmsg(m))
      }, error = rt$on_error)
      if (wn > 0) {
        cat(rt$warning_text(ws, kept), file = stderr())
        rt$set_last_warning(ws)
      }
    }
  }, error = function(e) {
    err <<- e
    cat(rt$format_condition("Error", e), "\n", sep = "", file = stderr())
    # The failed expression's warnings, as Rscript shows them.
    if (wn > 0) {
      cat("In addition: ", rt$warning_text(ws, kept), sep = "", file = stderr())
      rt$set_last_warning(ws)
    }
  }, interrupt = function(i) {
    interrupted <<- TRUE
  })
  # From here on the result must reach the host whole: an interrupt (a
  # timeout racing the end of the code) waits until it is sent.
  suspendInterrupts({
    flush(stdout())
    flush(stderr())
    failed <- !is.null(err) || interrupted
    error <- if (!is.null(err)) {
      cl <- rt$condition_call(err)
      list(message = rt$clip(conditionMessage(err)), call = if (!is.null(cl)) rt$clip(cl), class = class(err),
           traceback = rt$traceback(rt$error_calls))
    }
    on.exit(rt$error_calls <- NULL)
    # The frame's text beside the value, plots and files; they get the
    # room it leaves, so that the whole frame stays under max_frame.
    rest <- rt$result_rest(id, error, if (failed) "" else printed, warnings_kept, messages_kept)
    room <- min(rt$max_value, rt$max_frame - nchar(rest$frame, type = "bytes") - 1024)
    value <- if (failed) '{"type":"NULL"}' else rt$result_value(last, room)
    # Plots share the value's room in the frame; the value goes first.
    plots_out <- tryCatch(rt$plots_end(plot_state, room - nchar(value, type = "bytes")),
                          error = function(e) list(json = "[]", dropped = 0))
    if (!is.null(rt$on_result)) rt$on_result()
    rt$send(rt$result_frame(id,
      value = value,
      visible = isTRUE(last$visible) && !failed,
      printed = rest$printed,
      printed_bytes = if (failed) 0 else printed_bytes,
      displays = plots_out$json,
      displays_dropped = plots_out$dropped,
      warnings = rest$warnings,
      warnings_dropped = warnings_total - length(warnings_kept),
      messages = rest$messages,
      error = rest$error,
      interrupted = interrupted,
      # Files get the room the value and the plots left.
      files = rt$files_out(room - nchar(value, type = "bytes") - nchar(plots_out$json, type = "bytes"))))
  })
}

# result_rest clips the texts a result carries beside its value (printed
# form, warnings, messages, error) and returns them with the frame they
# make alone. When they would take more than the frame's reserve beside
# the value (a hundred long warnings, escaped control characters), each
# is clipped shorter, so that a result never breaks the frame limit.
rt$result_rest <- function(id, error, printed, warnings, messages) {
  reserve <- rt$max_frame - rt$max_value
  for (n in c(8192L, 1024L, 128L, 16L)) {
    r <- list(printed = rt$clip(printed, 8L * n), warnings = rt$clip(warnings, n),
              messages = rt$clip(messages, n), error = error)
    if (!is.null(error)) {
      r$error$message <- rt$clip(error$message, n)
      if (!is.null(error$call)) r$error$call <- rt$clip(error$call, n)
      r$error$traceback <- rt$clip(utils::tail(error$traceback, max(1L, n %/% 160L)), min(500L, n))
    }
    r$frame <- rt$result_frame(id, printed = r$printed, warnings = r$warnings,
                               messages = r$messages, error = r$error)
    if (nchar(r$frame, type = "bytes") <= reserve) break
  }
  r
}

# traceback is the code's calls at an error's signal, outermost first:
# those after the runtime's eval(expr, globalenv()) (R lists it twice)
# and before the handler's own frames (for errors raised in C code,
# .handleSimpleError(h, ...) and h(...), matched by position, not by the
# name h, which user functions may have). The 50 innermost are kept.
rt$traceback <- function(calls) {
  ev <- quote(eval(expr, globalenv()))
  top <- Position(function(cl) identical(cl, ev), calls)
  if (is.na(top)) return(character())
  if (top < length(calls) && identical(calls[[top + 1L]], ev)) top <- top + 1L
  end <- length(calls) - 1L # the handler
  hs <- Position(function(cl) is.call(cl) && identical(cl[[1L]], quote(.handleSimpleError)), calls, right = TRUE)
  if (!is.na(hs) && hs > top) end <- hs - 1L
  if (end <= top) return(character())
  calls <- utils::tail(calls[(top + 1L):end], 50L)
  rt$clip(vapply(calls, function(cl) paste(deparse(cl, nlines = 1L), collapse = ""), ""), 500L)
}
# on_error keeps the calls where an error is signalled; traceback()
# reads them once the stack has unwound. The handler does no more: at
# the depth of a runaway recursion R gives it little room, and more work
# there (even the JIT compiling it) fails the handler. It is compiled
# here for the same reason.
rt$on_error <- compiler::cmpfun(function(e) {
  rt$error_calls <- sys.calls()
})
