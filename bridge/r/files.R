# Files: the work dir, and files put into it or taken out of it by the
# host between executions (put_file, get_file, list_files) or around one
# (an execution's inputs and collected outputs).
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.

# The code runs in its own dir, so that "what the code wrote" is well
# defined; HOME and TMPDIR stay /tmp. Without the sandbox the host's /tmp
# is shared: the dir is then inside this R's own temp dir.
rt$work <- if (rt$on_host) file.path(tempdir(), "work") else "/tmp/work"
rt$make_work <- function() {
  if (!dir.exists(rt$work)) dir.create(rt$work, mode = "0700", showWarnings = FALSE)
  invisible(rt$work)
}
rt$enter_work <- function() {
  rt$make_work()
  setwd(rt$work)
}

# Limits, the same as the host's (files.go): per file, per request.
rt$max_file <- 4 * 1024^2
rt$max_files <- 16
rt$max_files_total <- 6 * 1024^2

# A name is a relative path of at most 4 components of [A-Za-z0-9._-],
# none "." or "..", each at most 255 bytes, all at most 1024: the host
# checks it too. It returns NULL or why the name is refused.
rt$bad_name <- function(name) {
  if (!is.character(name) || length(name) != 1 || is.na(name) || !nzchar(name)) return("a file name must be one non-empty string")
  if (nchar(name, type = "bytes") > 1024) return("a file name is at most 1024 bytes")
  parts <- strsplit(name, "/", fixed = TRUE)[[1]]
  if (length(parts) > 4 || endsWith(name, "/")) return("a file name has at most 4 components, none empty")
  for (p in parts) {
    if (!nzchar(p) || p %in% c(".", "..") || nchar(p, type = "bytes") > 255 ||
        !grepl("^[A-Za-z0-9._-]+$", p)) {
      return(paste0("file name ", rt$q(name), " is refused: components are 1-255 bytes of [A-Za-z0-9._-], not . or .."))
    }
  }
  NULL
}

# listing returns what the work dir holds, without following links: a
# data frame of type (find's %y: f regular, d dir, l link...), size,
# mtime and name. find writes names NUL-terminated, so that no name can
# forge a line.
rt$listing <- function() {
  rt$make_work()
  out <- tempfile("ls")
  on.exit(unlink(out))
  system2("find", c(shQuote(rt$work), "-mindepth", "1", "-maxdepth", "4",
                    "-printf", shQuote("%y %s %T@ %P\\0")),
          stdout = out, stderr = FALSE)
  raw <- readBin(out, "raw", n = max(0, file.size(out)))
  ends <- which(raw == as.raw(0))
  starts <- c(1L, head(ends, -1L) + 1L)
  rec <- vapply(seq_along(ends), function(i) {
    s <- rawToChar(raw[starts[i]:(ends[i] - 1L)])
    if (validUTF8(s)) s else NA_character_
  }, "")
  rec <- rec[!is.na(rec)]
  m <- regmatches(rec, regexec("^(.) ([0-9]+) ([0-9.]+) (.+)$", rec))
  m <- m[lengths(m) == 5]
  data.frame(type = vapply(m, `[`, "", 2), size = as.numeric(vapply(m, `[`, "", 3)),
             mtime = vapply(m, `[`, "", 4), name = vapply(m, `[`, "", 5),
             stringsAsFactors = FALSE)
}

# check_path refuses a name whose parent components are not plain dirs
# (a link, a file) or whose last one exists and is not a regular file.
# It returns the entry's row (NULL when it does not exist).
rt$check_path <- function(name, ls = rt$listing()) {
  why <- rt$bad_name(name)
  if (!is.null(why)) stop(why, call. = FALSE)
  parts <- strsplit(name, "/", fixed = TRUE)[[1]]
  if (length(parts) > 1) for (i in seq_len(length(parts) - 1)) {
    p <- paste(parts[seq_len(i)], collapse = "/")
    t <- ls$type[ls$name == p]
    if (length(t) == 1 && t != "d") stop(sprintf("%s is refused: %s is not a directory (links are not followed)", rt$q(name), rt$q(p)), call. = FALSE)
    if (length(t) == 0) return(NULL)
  }
  row <- ls[ls$name == name, , drop = FALSE]
  if (nrow(row) == 0) return(NULL)
  if (row$type[1] != "f") stop(sprintf("%s is refused: it is not a regular file (links are not followed)", rt$q(name)), call. = FALSE)
  row[1, ]
}

# put_file writes data (raw) under name, making its parent dirs.
rt$put_file <- function(name, data) {
  ls <- rt$listing()
  rt$check_path(name, ls)
  if (length(data) > rt$max_file) stop(sprintf("%s is %.0f bytes, over the %.0f-byte limit per file", rt$q(name), length(data), rt$max_file), call. = FALSE)
  parts <- strsplit(name, "/", fixed = TRUE)[[1]]
  if (length(parts) > 1) for (i in seq_len(length(parts) - 1)) {
    d <- file.path(rt$work, paste(parts[seq_len(i)], collapse = "/"))
    if (!dir.exists(d) && !dir.create(d, mode = "0700")) stop("cannot make the directory for ", rt$q(name), call. = FALSE)
  }
  path <- file.path(rt$work, name)
  con <- file(path, "wb")
  on.exit(close(con))
  writeBin(data, con)
  invisible(NULL)
}

# get_file reads a regular file of the work dir.
rt$get_file <- function(name) {
  row <- rt$check_path(name)
  if (is.null(row)) stop(sprintf("%s: no such file in the work dir", rt$q(name)), call. = FALSE)
  if (row$size > rt$max_file) stop(sprintf("%s is %.0f bytes, over the %.0f-byte limit per file", rt$q(name), row$size, rt$max_file), call. = FALSE)
  data <- readBin(file.path(rt$work, name), "raw", n = rt$max_file + 1)
  if (length(data) > rt$max_file) stop(sprintf("%s grew over the %.0f-byte limit per file", rt$q(name), rt$max_file), call. = FALSE)
  data
}

# base64 in one line: jsonlite wraps it at 76 characters.
rt$b64 <- function(data) if (length(data) == 0) "" else gsub("\n", "", jsonlite::base64_enc(data), fixed = TRUE)
rt$unb64 <- function(s) if (is.null(s) || !nzchar(s)) raw(0) else jsonlite::base64_dec(s)

# file_op answers the host's put_file, get_file and list_files frames with
# one file_reply frame.
rt$file_op <- function(msg) {
  reply <- tryCatch(switch(msg$type,
    put_file = {
      rt$put_file(msg$name, rt$unb64(msg$data))
      ""
    },
    get_file = {
      data <- rt$get_file(msg$name)
      paste0(',"name":', rt$q(msg$name), ',"data":"', rt$b64(data), '","size":', rt$num(length(data)))
    },
    list_files = {
      ls <- rt$listing()
      ls <- ls[ls$type == "f", , drop = FALSE]
      ok <- vapply(ls$name, function(n) is.null(rt$bad_name(n)), NA)
      ls <- utils::head(ls[ok, , drop = FALSE][order(ls$name[ok]), , drop = FALSE], 1000)
      if (nrow(ls) == 0) ',"files":[]'
      else paste0(',"files":[', paste0('{"name":', rt$q(ls$name), ',"size":', rt$num(ls$size), '}', collapse = ","), "]")
    }), error = function(e) e)
  err <- if (inherits(reply, "error")) conditionMessage(reply) else ""
  if (inherits(reply, "error")) reply <- ""
  rt$send(paste0('{"type":"file_reply","id":', rt$num(msg$id), ',"error":', rt$q(err), reply, "}"))
}

# Around one execution: inputs are written before the code, and with
# collect the regular files the code made or changed go back in the
# result (rt$files_out).
rt$files_before <- NULL
rt$prepare_files <- function(msg) {
  rt$files_before <- NULL
  for (f in msg$inputs) rt$put_file(f$name, rt$unb64(f$data))
  if (isTRUE(msg$collect)) {
    ls <- rt$listing()
    rt$files_before <- ls[ls$type == "f", , drop = FALSE]
  }
}

# files_out is the result frame's files members (NULL without collect):
# new or changed regular files, by name, within the limits and budget
# (bytes of JSON left in the frame); the rest are counted as dropped.
rt$files_out <- function(budget) {
  before <- rt$files_before
  if (is.null(before)) return(NULL)
  rt$files_before <- NULL
  ls <- tryCatch(rt$listing(), error = function(e) NULL)
  if (is.null(ls)) return(',"files":[],"files_dropped":0')
  ls <- ls[ls$type == "f", , drop = FALSE]
  key <- paste(ls$name, ls$size, ls$mtime)
  new <- ls[!key %in% paste(before$name, before$size, before$mtime), , drop = FALSE]
  new <- new[order(new$name), , drop = FALSE]
  out <- character()
  total <- 0
  dropped <- 0
  budget <- min(budget, rt$max_files_total * 4 / 3 + 1024)
  for (i in seq_len(nrow(new))) {
    name <- new$name[i]
    data <- if (is.null(rt$bad_name(name)) && length(out) < rt$max_files &&
                new$size[i] <= rt$max_file && total + new$size[i] <= rt$max_files_total) {
      tryCatch(rt$get_file(name), error = function(e) NULL)
    }
    if (is.null(data)) {
      dropped <- dropped + 1
      next
    }
    item <- paste0('{"name":', rt$q(name), ',"data":"', rt$b64(data), '","size":', rt$num(length(data)), "}")
    if (nchar(item, type = "bytes") + 1 > budget) {
      dropped <- dropped + 1
      next
    }
    budget <- budget - nchar(item, type = "bytes") - 1
    total <- total + length(data)
    out <- c(out, item)
  }
  paste0(',"files":[', paste(out, collapse = ","), '],"files_dropped":', rt$num(dropped))
}
