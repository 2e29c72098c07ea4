# Files between this R and a session's work dir (/tmp/work in the box,
# where each execution starts): $put_file(), $get_file(), $list_files()
# on SecureSession, and the files / output_dir of execute_r(). Collated
# after session.R (DESCRIPTION's Collate), which defines SecureSession.

.securer_max_file <- 4 * 1024^2
# What output_dir takes from one execution, as the server's collected
# outputs: files, and bytes together.
.securer_max_files <- 16
.securer_max_files_total <- 6 * 1024^2

# A name in the work dir: a relative path of at most 4 components of
# [A-Za-z0-9._-], none "." or ".."; the server and the box check it too.
.securer_check_file_name <- function(name) {
  ok <- is.character(name) && length(name) == 1 && !is.na(name) && nzchar(name) &&
    nchar(name, type = "bytes") <= 1024
  if (ok) {
    parts <- strsplit(name, "/", fixed = TRUE)[[1]]
    ok <- !endsWith(name, "/") && length(parts) <= 4 && all(nzchar(parts)) &&
      !any(parts %in% c(".", "..")) && all(nchar(parts, type = "bytes") <= 255) &&
      all(grepl("^[A-Za-z0-9._-]+$", parts))
  }
  if (!ok) {
    stop(sprintf("securer: file name %s is refused: a relative path of at most 4 components of [A-Za-z0-9._-], none . or ..",
                 encodeString(paste(name, collapse = " "), quote = "\"")), call. = FALSE)
  }
  name
}

.securer_b64 <- function(data) if (length(data) == 0) "" else gsub("\n", "", jsonlite::base64_enc(data), fixed = TRUE)
.securer_unb64 <- function(s) if (is.null(s) || !nzchar(s)) raw(0) else jsonlite::base64_dec(s)

# .securer_read_local reads a local file of at most 4 MiB.
.securer_read_local <- function(path) {
  if (!is.character(path) || length(path) != 1 || !file.exists(path) || dir.exists(path)) {
    stop(sprintf("securer: %s is not a file", encodeString(paste(path, collapse = " "), quote = "\"")), call. = FALSE)
  }
  data <- readBin(path, "raw", n = .securer_max_file + 1)
  if (length(data) > .securer_max_file) {
    stop(sprintf("securer: %s is over the %.0f-byte limit per file", path, .securer_max_file), call. = FALSE)
  }
  data
}

# .securer_write_local writes data to path under dir without following a
# link: every existing component below dir must be a plain directory and
# the file must not exist yet.
.securer_is_link <- function(p) {
  l <- Sys.readlink(p)
  !is.na(l) && nzchar(l) # NA: no such file
}
.securer_write_local <- function(dir, name, data) {
  parts <- strsplit(name, "/", fixed = TRUE)[[1]]
  p <- dir
  for (part in parts[-length(parts)]) {
    p <- file.path(p, part)
    if (.securer_is_link(p)) stop(sprintf("securer: %s is a symbolic link: not followed", p), call. = FALSE)
    if (!dir.exists(p) && !dir.create(p)) stop(sprintf("securer: cannot make %s", p), call. = FALSE)
  }
  path <- file.path(dir, name)
  if (.securer_is_link(path) || file.exists(path)) {
    stop(sprintf("securer: %s exists: not replaced", path), call. = FALSE)
  }
  writeBin(data, path)
  path
}

SecureSession$set("public", "put_file", function(path, name = basename(path)) {
  if (is.null(private$name)) stop("securer: the session is closed", call. = FALSE)
  .securer_check_file_name(name)
  data <- .securer_read_local(path)
  .securer_request(private$link, list(op = "put_file", session = private$name, name = name,
                                      data = .securer_b64(data)), "file_put")
  invisible(name)
})

SecureSession$set("public", "get_file", function(name, path = NULL) {
  if (is.null(private$name)) stop("securer: the session is closed", call. = FALSE)
  .securer_check_file_name(name)
  ev <- .securer_request(private$link, list(op = "get_file", session = private$name, name = name), "file")
  data <- .securer_unb64(ev$data)
  if (is.null(path)) return(data)
  writeBin(data, path)
  invisible(path)
})

SecureSession$set("public", "list_files", function() {
  if (is.null(private$name)) stop("securer: the session is closed", call. = FALSE)
  ev <- .securer_request(private$link, list(op = "list_files", session = private$name), "files")
  data.frame(name = vapply(ev$files, function(f) f$name, ""),
             size = vapply(ev$files, function(f) as.numeric(f$size), 0),
             stringsAsFactors = FALSE)
})

# .securer_with_files puts files (local paths; names, when given, name
# them in the work dir) into session, evaluates expr (the execution), and
# writes the files the code made or changed to output_dir.
.securer_with_files <- function(session, files, output_dir, expr) {
  inputs <- list()
  if (length(files) > 0) {
    names_in <- names(files) %||% rep("", length(files))
    names_in[!nzchar(names_in)] <- basename(files[!nzchar(names_in)])
    for (i in seq_along(files)) {
      session$put_file(files[[i]], names_in[[i]])
      inputs[[names_in[[i]]]] <- .securer_read_local(files[[i]])
    }
  }
  if (!is.null(output_dir) && !dir.exists(output_dir)) {
    stop(sprintf("securer: output_dir %s is not an existing directory", output_dir), call. = FALSE)
  }
  # Files the code wrote before an error are collected too; the error is
  # raised after.
  value <- tryCatch(withVisible(expr), error = function(e) e)
  if (!is.null(output_dir) && !(inherits(value, "error") && !inherits(value, "securer_execution_error"))) {
    # The same bounds as the server's collected outputs (16 files, 6 MiB):
    # the box chooses what its work dir lists (up to 1000 files of 4 MiB,
    # sparse ones costing it nothing), this R's disk is the host's.
    listed <- session$list_files()
    kept <- 0
    total <- 0
    dropped <- 0
    for (i in seq_len(nrow(listed))) {
      n <- listed$name[[i]]
      if (kept >= .securer_max_files || total + listed$size[[i]] > .securer_max_files_total) {
        dropped <- dropped + 1
        next
      }
      data <- session$get_file(n)
      if (!is.null(inputs[[n]]) && identical(inputs[[n]], data)) next
      if (total + length(data) > .securer_max_files_total) {
        dropped <- dropped + 1
        next
      }
      # A file already there (or a link in the way) is kept as it is and
      # counted: the execution's value is not lost for it.
      wrote <- tryCatch({ .securer_write_local(output_dir, n, data); TRUE }, error = function(e) {
        warning(structure(class = c("securer_file_not_written", "warning", "condition"),
                          list(message = conditionMessage(e), call = NULL)))
        FALSE
      })
      if (!wrote) next
      kept <- kept + 1
      total <- total + length(data)
    }
    if (dropped > 0) {
      warning(structure(class = c("securer_files_dropped", "warning", "condition"), list(
        message = sprintf("securer: %d file(s) of the work dir were not written to output_dir (at most %d files, %.0f bytes)",
                          dropped, .securer_max_files, .securer_max_files_total),
        call = NULL)))
    }
  }
  if (inherits(value, "error")) stop(value)
  if (value$visible) value$value else invisible(value$value)
}
