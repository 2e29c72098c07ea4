# The R side of the securer bridge. Started as the container's init
# process: connects to the host socket, then runs code it is sent,
# Rscript-style, and forwards tool calls to the host.
local({
  rt <- new.env(parent = baseenv())
  rt$dir <- commandArgs(trailingOnly = TRUE)[1]
  rt$sock <- commandArgs(trailingOnly = TRUE)[2]
  # "host": no sandbox (the host's UnsafeNoSandbox). The box sweep must
  # then never run: it would kill the host's processes and files.
  rt$on_host <- identical(commandArgs(trailingOnly = TRUE)[3], "host")
  loadNamespace("jsonlite")
  loadNamespace("processx")
  sys.source(file.path(rt$dir, "values.R"), envir = rt)

  # Nothing of the launch environment is kept that a user library could
  # be loaded from.
  Sys.unsetenv(c("R_LIBS_USER", "R_LIBS", "R_PROFILE_USER", "R_ENVIRON_USER"))

  # R starts with the JIT off (R_ENABLE_JIT=0) so that the runtime's own
  # functions are not compiled on first use, which would add ~30 ms to the
  # first execution; user code gets R's usual JIT level.
  loadNamespace("compiler")
  rt$user_jit <- 3L

  rt$main_pid <- Sys.getpid()
  rt$on_result <- NULL
  rt$next_id <- 0
  rt$con <- processx::conn_connect_unix_socket(rt$sock)
  rt$pending <- character()

  # processx's exported connection functions check their arguments on every
  # call, a third of a tool call's time in R; the runtime's arguments are
  # always valid, so it calls the same native routines directly when this
  # processx has them.
  px <- asNamespace("processx")
  if (all(vapply(c("c_processx_connection_write_bytes", "c_processx_connection_read_lines",
                   "c_processx_poll"), exists, NA, envir = px, inherits = FALSE))) {
    rt$write_raw <- function(data) .Call(px$c_processx_connection_write_bytes, rt$con, data)
    rt$read_lines <- function() .Call(px$c_processx_connection_read_lines, rt$con, -1)
    rt$wait_readable <- function() .Call(px$c_processx_poll, list(rt$con), 2L, -1L)
    rt$pause <- function() .Call(px$c_processx_poll, list(rt$con), 2L, 1L)
  } else {
    rt$write_raw <- function(data) processx::conn_write(rt$con, data)
    rt$read_lines <- function() processx::conn_read_lines(rt$con)
    rt$wait_readable <- function() processx::poll(list(rt$con), -1)
    rt$pause <- function() processx::poll(list(rt$con), 1)
  }

  # processx writes what the socket takes at once and hands back the rest
  # (it keeps no buffer), and cannot poll for writability: retry the rest.
  # A big frame goes out in slices: write_raw hands back a copy of what
  # the socket did not take, so retrying the whole rest would copy the
  # frame once per socket buffer's worth (quadratic: a 16 MB frame took
  # seconds, and under load longer than the execution's timeout).
  rt$send_slice <- 1048576L
  rt$send <- function(json) {
    # Only the R that runs the execution talks to the host. A forked child
    # (mcparallel) that an interrupt unwound through its copy of the
    # runtime would otherwise answer for it, and its stray result would
    # break the next execution: it ends here instead, without R's exit
    # clean-up (which would remove the parent's temp dir).
    if (Sys.getpid() != rt$main_pid) {
      try(parallel:::mcexit(1L), silent = TRUE)
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    data <- charToRaw(paste0(json, "\n"))
    n <- length(data)
    if (n <= rt$send_slice) return(rt$send_raw(data))
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

  # JSON strings for text R produced (messages, printed output): invalid
  # UTF-8 is escaped as <xx> rather than failing the whole result.
  rt$q <- function(x) {
    x <- as.character(x)
    bad <- !is.na(x) & !validUTF8(x)
    if (any(bad)) x[bad] <- iconv(x[bad], "UTF-8", "UTF-8", sub = "byte")
    rt$.securer_json_str(x)
  }
  rt$qstrs <- function(x) {
    if (length(x) == 0) return("[]")
    paste0("[", paste(rt$q(x), collapse = ","), "]")
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
      return(jsonlite::fromJSON(line, simplifyVector = FALSE))
    }
    if (interruptible) {
      allowInterrupts(rt$wait_readable())
    } else {
      tryCatch(allowInterrupts(rt$wait_readable()), interrupt = function(i) NULL)
    }
    lines <- rt$read_lines()
    # Readable but nothing to read: the host closed the connection.
    if (length(lines) == 0 && !processx::conn_is_incomplete(rt$con)) quit(save = "no", status = 0)
    rt$pending <- c(rt$pending, lines)
  })

  # An interrupt that arrived after the last execution's code had ended
  # belongs to it, not to the next one: deliver and drop it.
  rt$drop_stale_interrupt <- function() {
    tryCatch(allowInterrupts(processx::poll(list(), 0)), interrupt = function(i) NULL)
  }

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
    frame <- paste0('{"type":"tool_call","id":', id, ',"tool":', rt$q(name), ',"args":', args, "}")
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
      cond <- structure(
        class = c("securer_tool_error", "error", "condition"),
        list(message = paste0("tool '", name, "': ", msg$error), call = sys.call(-1))
      )
      stop(cond)
    }
    rt$.securer_decode(msg$value)
  }

  rt$max_frame <- 16 * 1024^2
  rt$max_value <- rt$max_frame - 256 * 1024
  rt$init <- function(msg) {
    rt$max_frame <- as.numeric(msg$max_frame)
    # Room for the printed form, warnings and messages beside the value.
    rt$max_value <- max(rt$max_frame - 256 * 1024, rt$max_frame / 2)
    rt$install_tools(msg$tools)
    failed <- NULL
    for (pkg in unlist(msg$preload)) {
      ok <- tryCatch(suppressPackageStartupMessages(library(pkg, character.only = TRUE)),
                     error = function(e) { failed <<- paste0("cannot load package '", pkg, "': ", conditionMessage(e)); NULL })
      if (!is.null(failed)) break
    }
    rt$send(paste0('{"type":"ready","error":', rt$q(if (is.null(failed)) "" else failed), "}"))
  }

  rt$install_tools <- function(tools) {
    if (length(tools) == 0) return(invisible())
    e <- attach(NULL, name = "securer:tools")
    for (t in tools) assign(t$name, rt$make_tool(t$name, unlist(t$args)), envir = e)
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
      errjson <- if (is.null(err)) "null" else paste0(
        '{"message":', rt$q(rt$clip(conditionMessage(err))),
        ',"call":', if (is.null(rt$condition_call(err))) "null" else rt$q(rt$clip(rt$condition_call(err))),
        ',"class":', rt$qstrs(class(err)), "}")
      rt$send(paste0(
        '{"type":"result","id":', id,
        ',"value":', value,
        ',"visible":', if (isTRUE(last$visible) && !failed) "true" else "false",
        ',"printed":', rt$q(if (failed) "" else rt$clip(printed, 65536L)),
        ',"warnings":', rt$qstrs(rt$clip(warnings_kept)),
        ',"warnings_dropped":', format(warnings_total - length(warnings_kept), scientific = FALSE),
        ',"messages":', rt$qstrs(rt$clip(messages_kept)),
        ',"error":', errjson,
        ',"interrupted":', if (interrupted) "true" else "false", "}"))
    })
  }

  # The last value as a wire value. Invisible values (assignments) are
  # sent only when small; anything that cannot cross, or would not fit in a
  # frame, becomes "unsupported" with a note, never a broken session.
  # A fresh execution runs in a forked copy of this warm R: variables,
  # options, environment variables, attached packages and loaded code all
  # vanish with the copy. This process never sees the code: the copy asks
  # for it (forked) and reads it from the inherited socket, while this
  # process only waits for the copy to end. Then it sweeps the box and says
  # so (swept). If the copy dies before it reports (the host kills it at a
  # timeout), this process reports for it.
  rt$execute_fresh <- function(id, stale_interrupt) {
    if (rt$on_host) stop("fresh executions need the sandbox")
    job <- parallel:::mcfork()
    if (inherits(job, "masterProcess")) {
      rt$main_pid <- Sys.getpid()
      # Tell the waiting parent before the result goes out: once the host
      # has it, it may kill this copy at any moment.
      rt$on_result <- function() parallel:::sendMaster(TRUE)
      try({
        rt$send(paste0('{"type":"forked","id":', id, '}'))
        repeat {
          msg <- rt$receive()
          if (identical(msg$type, "code") && identical(as.numeric(msg$id), as.numeric(id))) break
        }
        rt$execute(id, msg$code, stale_interrupt)
      }, silent = TRUE)
      parallel:::mcexit(0L)
    }
    sent <- suppressWarnings(parallel::mccollect(job, wait = TRUE))[[1]]
    if (!isTRUE(sent)) {
      rt$send(paste0('{"type":"result","id":', id, ',"value":{"type":"NULL"},"visible":false,"printed":"",',
                     '"warnings":[],"messages":[],"error":{"message":"the R process running this execution ended ',
                     'without a result (quit(), a crash, or killed at the time limit)","call":null,',
                     '"class":["securer_lost","error","condition"]},"interrupted":false}'))
    }
    rt$reset_box()
    rt$send(paste0('{"type":"swept","id":', id, '}'))
  }

  # Everything a fresh execution could leave in the box goes: processes
  # (all but init and this R), files in the writable places, POSIX message
  # queues and System V IPC objects (they live in the box's IPC namespace).
  # Processes go first, so that none can write a file after the sweep. A
  # shell does it, so that this process never reads a name the copy chose
  # (its memory is what the next copy starts from).
  rt$sweep_script <- paste(
    'for round in 1 2 3 4 5; do',
    '  for p in /proc/[0-9]*; do p=${p#/proc/};',
    '    [ "$p" = 1 ] || [ "$p" = "$2" ] || [ "$p" = "$PPID" ] || [ "$p" = "$$" ] || kill -9 "$p" 2>/dev/null;',
    '  done;',
    'done;',
    'find /tmp /dev/shm /dev/mqueue -mindepth 1 -maxdepth 1 ! -path "$1" -exec rm -rf {} + 2>/dev/null;',
    'find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null;',
    'ipcrm --all 2>/dev/null;',
    'exit 0')
  rt$reset_box <- function() {
    if (rt$on_host) stop("the box sweep runs only in the sandbox")
    # $1: R's temp dir (kept, emptied); $2: this R (spared, with init and
    # the shells running the sweep).
    system2("/bin/sh", c("-c", shQuote(rt$sweep_script), "sweep", shQuote(tempdir()), Sys.getpid()),
            stdout = FALSE, stderr = FALSE)
    # quit() in the copy removes the session's temp dir: make it again.
    invisible(tempdir(check = TRUE))
  }

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

  try(rt$make_last_warning(), silent = TRUE)
  rt$send(paste0('{"type":"hello","protocol":1,"pid":', Sys.getpid(),
                 ',"r_version":', rt$q(paste(R.version$major, R.version$minor, sep = ".")), "}"))
  suspendInterrupts(repeat {
    msg <- rt$receive()
    switch(msg$type,
      init = rt$init(msg),
      execute = tryCatch(
        if (isTRUE(msg$fresh)) rt$execute_fresh(msg$id, msg$stale_interrupt)
        else rt$execute(msg$id, msg$code, msg$stale_interrupt),
        error = function(e) rt$send(paste0(
          '{"type":"result","id":', msg$id, ',"value":{"type":"NULL"},"visible":false,"printed":"",',
          '"warnings":[],"messages":[],"error":{"message":', rt$q(paste("securer runtime:", conditionMessage(e))),
          ',"call":null,"class":["securer_runtime_error","error","condition"]},"interrupted":false}'))),
      NULL
    )
  })
})
