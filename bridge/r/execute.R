# Execution: code parsed and run at top level, Rscript-style, with its
# output, warnings and messages collected for the result frame.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# An interrupt that arrived after the last execution's code had ended
# belongs to it, not to the next one: deliver and drop it.
rt$drop_stale_interrupt <- function() {
  tryCatch(allowInterrupts(processx::poll(list(), 0)), interrupt = function(i) NULL)
}

rt$execute <- function(id, code, stale_interrupt) {
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
  err <- NULL
  interrupted <- FALSE
  ws <- list()
  wn <- 0L
  kept <- 50L
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
          if (length(out) > 0) cat(out, sep = "\n")
        } else {
          printed <- ""
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
      })
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
    value <- if (failed) '{"type":"NULL"}' else rt$result_value(last)
    if (!is.null(rt$on_result)) rt$on_result()
    error <- if (!is.null(err)) {
      cl <- rt$condition_call(err)
      list(message = rt$clip(conditionMessage(err)), call = if (!is.null(cl)) rt$clip(cl), class = class(err))
    }
    rt$send(rt$result_frame(id,
      value = value,
      visible = isTRUE(last$visible) && !failed,
      printed = if (failed) "" else rt$clip(printed, 65536L),
      warnings = rt$clip(warnings_kept),
      warnings_dropped = warnings_total - length(warnings_kept),
      messages = rt$clip(messages_kept),
      error = error,
      interrupted = interrupted,
      files = rt$files_out(rt$max_value - nchar(value, type = "bytes"))))
  })
}
