# The R side of the securer bridge. Started as the container's init
# process: connects to the host socket, then runs code it is sent,
# Rscript-style, and forwards tool calls to the host.
#
# The runtime is split by job; main.R sets up, loads the parts into its
# local() environment (so their functions share rt) and runs the loop:
#   transport.R   the socket: sending and receiving frames
#   tools.R       host tools as R functions (tool_call / tool_result)
#   conditions.R  errors and warnings as Rscript shows them
#   execute.R     running code, collecting what the result reports
#   result.R      the result frame and the value it carries
#   plots.R       plots drawn by the code, as images
#   fresh.R       fresh executions in a forked copy; the box sweep
#   files.R       the work dir; files put, fetched, listed, collected
#   values.R      the typed value codec (sourced into rt itself)
# Its functions find base R's functions before the global environment and
# the search path, where user code and host tools named like them (cat,
# print, paste0, tryCatch...) would break the runtime.
local(envir = new.env(parent = .BaseNamespaceEnv), {
  rt <- new.env(parent = baseenv())
  rt$dir <- commandArgs(trailingOnly = TRUE)[1]
  rt$sock <- commandArgs(trailingOnly = TRUE)[2]
  # "host": no sandbox (the host's UnsafeNoSandbox). The box sweep must
  # then never run: it would kill the host's processes and files.
  rt$on_host <- identical(commandArgs(trailingOnly = TRUE)[3], "host")
  loadNamespace("jsonlite")
  # jsonlite's parser itself: what fromJSON(line, simplifyVector = FALSE)
  # returns for a host frame, without its ~20 us of argument checks on
  # every message.
  rt$json_parse <- getNativeSymbolInfo("R_parse", "jsonlite")
  # processx's native code, without its R namespace: the runtime needs
  # only its socket connection, and loading the namespace (with R6 and
  # ps) took ~50 ms of every start and ~4 MiB of every box. library.dynam
  # registers the library, so that code loading processx later gets this
  # same one rather than a second copy.
  rt$px_dll <- library.dynam("processx", "processx", .libPaths())
  rt$px <- function(routine) getNativeSymbolInfo(paste0("processx_", routine), rt$px_dll)
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
  rt$con <- .Call(rt$px("connection_connect_socket"), rt$sock, "")
  rt$pending <- character()
  # The rootfs's memory helper (build-rootfs.sh); absent on the host
  # (UnsafeNoSandbox) or in a rootfs built without a C compiler.
  rt$mem_helper <- "/usr/lib/securer/securer-mem.so"
  rt$can_trim <- !rt$on_host && file.exists(rt$mem_helper) &&
    !inherits(try(dyn.load(rt$mem_helper), silent = TRUE), "try-error")
  rt$trim_due <- FALSE
  # Page merging (Host.UnsafeMergePages): merge_wanted from init; merged
  # while the start-up memory is offered; pristine while this R has held
  # nothing of any code's (no code run here, no file read or written).
  rt$merge_wanted <- FALSE
  rt$merged <- FALSE
  rt$pristine <- TRUE

  for (part in c("transport.R", "tools.R", "conditions.R", "execute.R", "result.R", "fresh.R", "plots.R", "files.R")) {
    for (e in parse(file.path(rt$dir, part), keep.source = FALSE)) eval(e, environment())
  }

  rt$max_frame <- 16 * 1024^2
  rt$max_value <- rt$max_frame - 256 * 1024
  rt$init <- function(msg) {
    rt$max_frame <- as.numeric(msg$max_frame)
    # Room for the printed form, warnings and messages beside the value.
    rt$max_value <- max(rt$max_frame - 256 * 1024, rt$max_frame / 2)
    rt$merge_wanted <- isTRUE(msg$merge_pages) && rt$can_trim
    rt$install_runtime()
    rt$install_tools(msg$tools)
    failed <- NULL
    for (pkg in unlist(msg$preload)) {
      ok <- tryCatch(suppressPackageStartupMessages(library(pkg, character.only = TRUE)),
                     error = function(e) { failed <<- paste0("cannot load package '", pkg, "': ", conditionMessage(e)); NULL })
      if (!is.null(failed)) break
    }
    rt$send(paste0('{"type":"ready","error":', rt$q(if (is.null(failed)) "" else failed), "}"))
  }

  try(rt$make_last_warning(), silent = TRUE)
  rt$send(paste0('{"type":"hello","protocol":1,"pid":', Sys.getpid(),
                 ',"r_version":', rt$q(paste(R.version$major, R.version$minor, sep = ".")), "}"))
  suspendInterrupts(repeat {
    msg <- rt$receive()
    switch(msg$type,
      init = rt$init(msg),
      execute = tryCatch(
        if (isTRUE(msg$fresh)) rt$execute_fresh(msg$id, msg$stale_interrupt, msg$plots)
        else { rt$taint(); rt$enter_work(); rt$prepare_files(msg); rt$execute(msg$id, msg$code, msg$stale_interrupt, msg$plots) },
        error = function(e) rt$send(rt$result_frame(msg$id, error = list(
          message = paste("securer runtime:", conditionMessage(e)),
          class = c("securer_runtime_error", "error", "condition"))))),
      sweep = rt$sweep(msg),
      put_file = , get_file = , list_files = { rt$taint(); rt$file_op(msg) },
      # Anything else was meant for a fresh copy that ended before it read
      # it (a tool's answer, which a copy's code can leave here on
      # purpose): bytes a code chose are in this R now.
      rt$taint()
    )
    rt$trim_due <- rt$can_trim
  })
})
