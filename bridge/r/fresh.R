# Fresh executions: each runs in a forked copy of this R, and the box is
# swept after it.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# A fresh execution runs in a forked copy of this warm R: variables,
# options, environment variables, attached packages and loaded code all
# vanish with the copy. This process never sees the code: the copy asks
# for it (forked) and reads it from the inherited socket, while this
# process only waits for the copy to end. If the copy dies before it
# reports (the host kills it at a timeout), this process reports for it.
# The box is swept when the host asks (sweep), not here: the host first
# ends every process the execution left, so that none of them can write
# a frame after the sweep's answer.
rt$execute_fresh <- function(id, stale_interrupt, plots = NULL) {
  if (rt$on_host) stop("fresh executions need the sandbox")
  job <- parallel:::mcfork()
  if (inherits(job, "masterProcess")) {
    rt$main_pid <- Sys.getpid()
    rt$trim_due <- rt$can_trim <- FALSE # the copy is short-lived: no idle trims
    # The copy's pages become its own before it reads the code: nothing a
    # code writes is ever offered for merging.
    rt$merge_wanted <- FALSE
    rt$taint()
    # mcfork gives the copy a stdin pipe whose write end this warm R
    # keeps open: code reading stdin would wait for its timeout. The copy
    # reads /dev/null instead (fd 0 is the lowest free descriptor, so the
    # connection opened after the close takes it).
    parallel:::closeFD(0L)
    rt$null_stdin <- file("/dev/null", open = "rb")
    # Tell the waiting parent before the result goes out: once the host
    # has it, it may kill this copy at any moment.
    rt$on_result <- function() parallel:::sendMaster(TRUE)
    try({
      rt$send(paste0('{"type":"forked","id":', rt$num(id), '}'))
      repeat {
        msg <- rt$receive()
        if (identical(msg$type, "code") && identical(as.numeric(msg$id), as.numeric(id))) break
      }
      # Inputs go into the copy's box, swept with it; one refused is the
      # execution's error, reported by the copy.
      why <- tryCatch({ rt$enter_work(); rt$prepare_files(msg); NULL },
                      error = function(e) conditionMessage(e))
      if (is.null(why)) rt$execute(id, msg$code, stale_interrupt, plots) else {
        rt$on_result()
        rt$send(rt$result_frame(id, error = list(message = paste("securer runtime:", why),
          class = c("securer_runtime_error", "error", "condition"))))
      }
    }, silent = TRUE)
    parallel:::mcexit(0L)
  }
  if (!rt$await_copy(job$pid)) {
    rt$send(rt$result_frame(id, error = list(
      message = paste("the R process running this execution ended without a result",
                      "(quit(), a crash, or killed at the time limit)"),
      class = c("securer_lost", "error", "condition"))))
  }
}

# await_copy waits for the copy to end and says whether it reported its
# result (on_result's message). The copy can write anything to the pipe
# this reads (parallel:::sendMaster is callable from its code), so the
# messages are compared as bytes and never unserialized here:
# unserializing a namespace reference would load that package into this
# warm R, for every later copy to start from.
rt$copy_done_bytes <- serialize(TRUE, NULL, xdr = FALSE)
rt$await_copy <- function(pid) {
  sent <- FALSE
  repeat {
    ready <- parallel:::selectChildren(pid, -1)
    if (is.integer(ready)) {
      msg <- parallel:::readChild(pid)
      if (!is.raw(msg)) break # the copy ended; its pipe is closed
      attributes(msg) <- NULL # readChild marks it with the pid
      if (identical(msg, rt$copy_done_bytes)) sent <- TRUE
      else rt$taint() # bytes of the code's choosing are in this R now
    } else if (!(pid %in% parallel:::processID(parallel:::children()))) break
  }
  sent
}

# sweep answers the host's sweep after fresh execution msg$id, with the
# host's token: the host knows the swept frame that carries it is this
# process's, and drops whatever came before it. By then the host has
# emptied the box (internal/boxsweep): it ended every process but init and
# this R, and removed the files in the writable places (R's temp dir and
# the work dir too, so that neither what the code put at their paths nor
# their modes or times carry over) and the System V IPC objects. The host
# does that, not a shell here: no process starts per execution, and this
# process never reads a name the copy chose (its memory is what the next
# copy starts from).
rt$sweep <- function(msg) {
  why <- rt$reset_box()
  rt$send(paste0('{"type":"swept","id":', rt$num(msg$id),
                 ',"token":', rt$q(msg$token),
                 if (!is.null(why)) paste0(',"error":', rt$q(why)), '}'))
}

# reset_box makes R's temp dir and the work dir anew and returns NULL, or
# why the box is not clean (the host then retires it).
rt$reset_box <- function() {
  if (rt$on_host) stop("the box sweep runs only in the sandbox")
  tempdir(check = TRUE)
  rt$make_work()
  # Each must be a directory, mode 0700, not a link. (No other process
  # runs in the box now, so what is there this R made; the owner's name is
  # not looked up: that costs a passwd lookup per execution.)
  for (d in c(tempdir(), rt$work)) {
    info <- file.info(d, extra_cols = FALSE)
    if (!isTRUE(info$isdir) || nzchar(Sys.readlink(d)) || !identical(format(info$mode), "700"))
      return(paste("the directory", d, "was not made anew"))
  }
  NULL
}
