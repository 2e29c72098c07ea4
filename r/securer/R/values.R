# Generated from bridge/r/values.R by `go generate ./bridge/` (make rvalues).
# Do not edit: bridge's TestRPackageValues fails when the two differ.
# Typed R values on the wire. This file must agree exactly with the Go
# package github.com/securer-runc/securer-runc/rvalue (see its doc.go for
# the wire format). It is the one source of the R package's copy,
# r/securer/R/values.R (go generate ./bridge/, or make rvalues).
#
# Sourced into the runtime's environment: it only defines functions, so
# sourcing it twice, or in a fresh session, is harmless. Limits are
# literals inside the functions for the same reason (no global state).

# .securer_encode(x) -> length-1 character: the JSON wire value of x.
.securer_encode <- function(x) {
  s <- .securer_encode_plain(x)
  if (is.null(s)) .securer_enc(x, 1L, .securer_enc_state()) else s
}

# .securer_encode(x) for the plain values below, else NULL.
.securer_encode_plain <- function(x) {
  if (is.null(attributes(x)) && !isS4(x)) .securer_enc_plain(x)
}

# The common plain values (scalars and short vectors without attributes:
# most tool arguments and answers) in few steps: what .securer_enc
# writes for them, byte for byte, or NULL for anything else. Small and
# loop-free, so that under R's JIT it is never compiled (tools.R).
.securer_enc_plain <- function(x) {
  t <- typeof(x)
  v <- switch(t, double = .securer_plain_dbl(x), integer = .securer_plain_int(x),
              logical = .securer_plain_lgl(x), character = .securer_plain_chr(x))
  if (!is.null(v)) paste0("{\"type\":\"", t, "\",\"value\":[", v, "]}")
}
.securer_plain_dbl <- function(x) if (length(x) == 1L && is.finite(x)) .securer_dbl1(x)
.securer_plain_int <- function(x) if (!anyNA(x)) paste(x, collapse = ",")
.securer_plain_lgl <- function(x) if (!anyNA(x)) paste(c("false", "true")[x + 1L], collapse = ",")
# Printable ASCII but for the quote and the backslash needs no escaping.
.securer_plain_chr <- function(x) {
  if (length(x) > 0L && !anyNA(x) && !any(grepl("[^ !#-\\[\\]-~]", x, perl = TRUE, useBytes = TRUE)))
    paste0("\"", paste(x, collapse = "\",\""), "\"")
}

# A finite double that 15 digits carry exactly, as .securer_fmt_dbl
# writes it; NULL for the rest (more digits, negative zero).
.securer_dbl1 <- function(x) {
  s <- sprintf("%.15g", x)
  if (as.numeric(s) == x && s != "-0") s
}

# .securer_decode(v) -> R value, where v is
# jsonlite::fromJSON(txt, simplifyVector = FALSE) of a wire value.
# It never fails: a value that cannot be rebuilt becomes a
# securer_unsupported placeholder, with a warning saying why.
.securer_decode <- function(v) {
  x <- .securer_decode_plain(v)
  if (!is.null(x)) return(x)
  tryCatch(.securer_dec(v, 1L, new.env(parent = emptyenv())), error = function(e) {
    warning("securer: a value could not be decoded and is a placeholder: ",
            conditionMessage(e), call. = FALSE)
    cls <- if (is.list(v)) v[["class"]] else NULL
    if (is.null(cls)) cls <- if (is.list(v) && is.character(v[["type"]])) v[["type"]] else "unknown"
    .securer_placeholder(cls, paste("cannot decode:", conditionMessage(e)))
  })
}

# .securer_decode(v) for the plain values below, else NULL.
.securer_decode_plain <- function(v) {
  if (length(v) == 2L && identical(names(v), c("type", "value"))) .securer_dec_plain(v[[1L]], v[[2L]])
}

# The common plain values (atomic vectors without attributes, no NA) in
# few steps: what .securer_dec rebuilds from them, or NULL for anything
# else, which the general decoder then takes. Loop-free (tools.R).
.securer_dec_plain <- function(type, val) {
  u <- if (is.character(type) && length(type) == 1L) .securer_dec_unlist(val)
  if (!is.null(u)) switch(type,
    double = if (is.numeric(u)) as.double(u),
    integer = if (is.integer(u)) u,
    logical = if (is.logical(u)) u,
    character = if (is.character(u)) u)
}
# The elements of a wire vector with one scalar each, or NULL.
.securer_dec_unlist <- function(val) {
  if (!is.list(val) || length(val) == 0L || !all(lengths(val) == 1L)) return(NULL)
  u <- unlist(val, use.names = FALSE)
  if (length(u) == length(val)) u
}

# A value that did not cross: the R class it had and a short description.
.securer_placeholder <- function(class, repr) {
  structure(list(class = as.character(unlist(class)), repr = as.character(repr)),
            class = "securer_unsupported")
}

print.securer_unsupported <- function(x, ...) {
  cat("<securer: a value that did not cross (", paste(x$class, collapse = "/"), ")>\n", sep = "")
  if (length(x$repr) && nzchar(x$repr)) cat(x$repr, "\n", sep = "")
  invisible(x)
}

# ---- encoding -------------------------------------------------------------

# Per-encode state: the local environments already sent (cycles and shared
# environments become references to their id) and the current nesting of
# local environments.
.securer_enc_state <- function() {
  st <- new.env(parent = emptyenv())
  st$envs <- list()
  st$env_depth <- 0L
  st
}

.securer_enc <- function(x, depth, st = .securer_enc_state()) {
  if (depth > 100L) {
    stop("cannot send value: nested deeper than 100 levels", call. = FALSE)
  }
  t <- typeof(x)
  s4 <- isS4(x)
  switch(t,
    symbol = return(paste0("{\"type\":\"symbol\",\"value\":",
                           .securer_json_str(as.character(x)), "}")),
    language = return(.securer_enc_language(x, depth, st)),
    closure = return(.securer_enc_closure(x, depth, st)),
    builtin = , special = return(paste0("{\"type\":\"primitive\",\"name\":",
                                        .securer_json_str(.securer_primitive_name(x)), "}")),
    environment = return(.securer_enc_env(x, depth, st)),
    S4 = {
      attrs <- .securer_enc_attrs(x, depth, st)
      return(paste0("{\"type\":\"S4\"", if (!is.null(attrs)) paste0(",\"attributes\":", attrs), "}"))
    },
    pairlist = return(.securer_enc_pairlist(x, depth, st)))
  if (!(t %in% c("NULL", "logical", "integer", "double", "character", "list", "raw", "complex"))) {
    return(.securer_enc_unsupported(x))
  }
  if (is.null(x)) return("{\"type\":\"NULL\"}")
  # Environments are numbered in wire order (the elements, then the
  # attributes), so the attributes are encoded after the elements.
  a <- x
  # Work on the bare vector so class methods (length, is.na, as.list...)
  # cannot change what is sent.
  x <- unclass(x)
  val <- switch(typeof(x),
    logical = {
      s <- rep.int("false", length(x))
      s[x %in% TRUE] <- "true"
      s[is.na(x)] <- "null"
      .securer_json_array(s)
    },
    integer = {
      s <- as.character(x)
      s[is.na(x)] <- "null"
      .securer_json_array(s)
    },
    double = .securer_json_array(.securer_fmt_dbl(x)),
    character = {
      na <- is.na(x)
      if (!any(na)) {
        # Joining with '","' avoids quoting each element separately,
        # which dominates the cost for long vectors.
        if (length(x) == 0L) "[]" else
          paste0("[\"", paste(.securer_json_esc(x), collapse = "\",\""), "\"]")
      } else {
        s <- rep.int("null", length(x))
        s[!na] <- paste0("\"", .securer_json_esc(x[!na]), "\"")
        .securer_json_array(s)
      }
    },
    complex = {
      re <- Re(x)
      im <- Im(x)
      # null only for R's NA_complex_ (both parts NA, not NaN); any other
      # non-finite part is spelled out so NaN/Inf survive.
      na <- is.na(re) & !is.nan(re) & is.na(im) & !is.nan(im)
      s <- rep.int("null", length(x))
      s[!na] <- paste0("{\"re\":", .securer_fmt_dbl(re[!na]),
                       ",\"im\":", .securer_fmt_dbl(im[!na]), "}")
      .securer_json_array(s)
    },
    list = {
      # A plain loop, not vapply: each vapply level costs ~2x the C stack,
      # and 100 nested levels must fit in R's default 8 MB stack.
      s <- character(length(x))
      for (i in seq_along(x)) s[i] <- .securer_enc(x[[i]], depth + 1L, st)
      .securer_json_array(s)
    },
    # base64_enc wraps lines; the wire wants one unbroken string.
    raw = paste0("\"", gsub("\n", "", jsonlite::base64_enc(x), fixed = TRUE), "\"")
  )
  attrs <- .securer_enc_attrs(a, depth, st)
  out <- paste0("{\"type\":\"", typeof(x), "\",\"value\":", val)
  if (!is.null(attrs)) out <- paste0(out, ",\"attributes\":", attrs)
  if (s4) out <- paste0(out, ",\"s4\":true")
  paste0(out, "}")
}

# Types the encoder can send as themselves (anything else is unsupported).
.securer_sendable <- function(x) {
  typeof(x) %in% c("NULL", "logical", "integer", "double", "character", "list",
                   "raw", "complex", "symbol", "language", "closure", "builtin",
                   "special", "environment", "S4", "pairlist")
}

# Source references point into parse data on the sending side; they are
# dropped, and the code travels as its structure.
.securer_srcref_attrs <- c("srcref", "srcfile", "wholeSrcref")

.securer_enc_attrs <- function(x, depth, st) {
  a <- attributes(x)
  if (is.null(a)) return(NULL)
  # attributes() expands compact row names (c(NA, -n)) to 1:n, and setting
  # 1:n back does not always re-compact, so send the stored form.
  if (!is.null(a[["row.names"]])) a[["row.names"]] <- .row_names_info(x, 0L)
  # Attributes that cannot cross (e.g. data.table's external pointer) are
  # dropped rather than making the whole value unsupported.
  keep <- vapply(a, function(v) !is.null(v) && .securer_sendable(v), NA, USE.NAMES = FALSE)
  keep <- keep & !(names(a) %in% .securer_srcref_attrs)
  a <- a[keep]
  if (length(a) == 0L) return(NULL)
  vals <- character(length(a))
  for (i in seq_along(a)) vals[i] <- .securer_enc(a[[i]], depth + 1L, st)
  keys <- .securer_json_str(names(a))
  paste0("{", paste0(keys, ":", vals, collapse = ","), "}")
}

# The empty symbol (a missing argument) cannot be passed to a function
# without an error, so parts and formals are tested for it in place.
.securer_missing_arg <- "{\"type\":\"symbol\",\"value\":\"\"}"

# Elements of a call, pairlist or formals, encoded one by one.
.securer_enc_parts <- function(parts, depth, st) {
  vals <- character(length(parts))
  for (i in seq_along(parts)) {
    vals[i] <- if (identical(parts[[i]], quote(expr = ))) .securer_missing_arg
               else .securer_enc(parts[[i]], depth + 1L, st)
  }
  vals
}

.securer_enc_names <- function(parts) {
  if (length(parts) == 0L) return("[]")
  nms <- names(parts)
  if (is.null(nms)) nms <- character(length(parts))
  nms[is.na(nms)] <- ""
  paste0("[", paste(.securer_json_str(.securer_lossy_utf8(nms)), collapse = ","), "]")
}

# deparse() for display only: clipped, never parsed back.
.securer_repr <- function(x, limit = 1000L) {
  r <- tryCatch(paste(deparse(x, width.cutoff = 80L, nlines = 40L), collapse = "\n"),
                error = function(e) paste0("<", typeof(x), ">"))
  r <- .securer_lossy_utf8(r)
  if (nchar(r) > limit) r <- paste0(substr(r, 1L, limit - 3L), "...")
  r
}

.securer_enc_language <- function(x, depth, st) {
  parts <- as.list(x)
  # function(...) calls carry the srcref of their text as a 4th part.
  if (length(parts) == 4L && identical(parts[[1L]], as.name("function"))) parts[4L] <- list(NULL)
  vals <- .securer_enc_parts(parts, depth, st)
  attrs <- .securer_enc_attrs(x, depth, st)
  paste0("{\"type\":\"language\",\"value\":[", paste(vals, collapse = ","),
         "],\"names\":", .securer_enc_names(parts),
         ",\"repr\":", .securer_json_str(.securer_repr(x)),
         if (!is.null(attrs)) paste0(",\"attributes\":", attrs), "}")
}

# A pairlist (the formals inside a function(...) call) travels as a list
# flagged "pairlist".
.securer_enc_pairlist <- function(x, depth, st) {
  parts <- as.list(x)
  nms <- names(parts)
  out <- paste0("{\"type\":\"list\",\"value\":[",
                paste(.securer_enc_parts(parts, depth, st), collapse = ","), "]")
  if (!is.null(nms)) {
    nms[is.na(nms)] <- ""
    out <- paste0(out, ",\"attributes\":{\"names\":{\"type\":\"character\",\"value\":[",
                  paste(.securer_json_str(.securer_lossy_utf8(nms)), collapse = ","), "]}}")
  }
  paste0(out, ",\"pairlist\":true}")
}

.securer_enc_closure <- function(x, depth, st) {
  f <- formals(x)
  src <- attr(x, "srcref")
  src <- if (is.null(src)) .securer_repr(x, 10000L) else
    .securer_lossy_utf8(paste(as.character(src), collapse = "\n"))
  fv <- .securer_enc_parts(f, depth, st)
  body <- .securer_enc(body(x), depth + 1L, st)
  env <- .securer_enc_env(environment(x), depth + 1L, st)
  attrs <- .securer_enc_attrs(x, depth, st)
  paste0("{\"type\":\"closure\",\"formals\":{\"names\":",
         if (length(f)) .securer_enc_names(f) else "[]",
         ",\"values\":[", paste(fv, collapse = ","),
         "]},\"body\":", body, ",\"env\":", env,
         ",\"source\":", .securer_json_str(src),
         if (!is.null(attrs)) paste0(",\"attributes\":", attrs), "}")
}

.securer_primitive_name <- function(x) {
  sub("^\\.Primitive\\(\"(.*)\"\\)$", "\\1", deparse(x)[1L])
}

# Environments: the well-known ones by kind (never their bindings); a local
# one with at most 100 bindings (sorted by name), local environments
# nested at most 5 deep (deeper ones are sent without bindings), and each
# environment once: a second sighting (a cycle, a shared environment) is a
# reference to the id of the first.
.securer_enc_env <- function(e, depth, st) {
  if (depth > 100L) stop("cannot send value: nested deeper than 100 levels", call. = FALSE)
  kind <- if (identical(e, globalenv())) "global" else
    if (identical(e, baseenv())) "base" else
    if (identical(e, emptyenv())) "empty" else
    if (isNamespace(e)) "namespace" else
    if (is.character(attr(e, "name")) && nzchar(attr(e, "name")[1L])) "package" else "local"
  if (kind != "local") {
    name <- if (kind == "namespace") getNamespaceName(e) else
      if (kind == "package") as.character(attr(e, "name"))[1L] else ""
    return(paste0("{\"type\":\"environment\",\"kind\":\"", kind, "\",\"name\":",
                  .securer_json_str(.securer_lossy_utf8(name)), "}"))
  }
  for (i in seq_along(st$envs)) {
    if (identical(st$envs[[i]], e)) {
      return(paste0("{\"type\":\"environment\",\"kind\":\"local\",\"name\":\"\",\"ref\":\"e", i, "\"}"))
    }
  }
  st$envs[[length(st$envs) + 1L]] <- e
  id <- paste0("e", length(st$envs))
  nm <- sort(ls(e, all.names = TRUE))
  kept <- if (st$env_depth >= 5L) character() else utils::head(nm, 100L)
  # Names with invalid bytes are sent repaired; two that repair alike would
  # be one name twice, which the host refuses: the later one is dropped.
  kept <- kept[!duplicated(.securer_lossy_utf8(kept))]
  vals <- character(length(kept))
  st$env_depth <- st$env_depth + 1L
  on.exit(st$env_depth <- st$env_depth - 1L)
  for (i in seq_along(kept)) {
    v <- tryCatch(get(kept[i], envir = e, inherits = FALSE), error = function(err) err)
    vals[i] <- if (inherits(v, "error")) .securer_enc_unsupported(NULL, "<missing or failing binding>")
      else if (utils::object.size(v) > 1e6) .securer_enc_unsupported(v, "<binding larger than 1 MB>")
      else .securer_enc(v, depth + 1L, st)
  }
  attrs <- .securer_enc_attrs(e, depth, st)
  paste0("{\"type\":\"environment\",\"kind\":\"local\",\"name\":\"\",\"id\":\"", id,
         # paste0() of an empty vector with quotes would give one "".
         "\",\"names\":[", if (length(kept)) paste(.securer_json_str(.securer_lossy_utf8(kept)), collapse = ","),
         "],\"values\":[", paste(vals, collapse = ","),
         "],\"dropped\":", length(nm) - length(kept),
         if (!is.null(attrs)) paste0(",\"attributes\":", attrs), "}")
}

.securer_enc_unsupported <- function(x, repr = .securer_repr(x)) {
  cls <- .securer_lossy_utf8(as.character(class(x)))
  paste0("{\"type\":\"unsupported\",\"class\":[",
         paste(.securer_json_str(cls), collapse = ","),
         "],\"repr\":", .securer_json_str(repr), "}")
}

# Diagnostics (class, repr) should never fail to send, so invalid bytes are
# replaced instead of raising the error that real data gets.
.securer_lossy_utf8 <- function(s) {
  s <- enc2utf8(s)
  bad <- !validUTF8(s)
  if (any(bad)) s[bad] <- iconv(s[bad], "UTF-8", "UTF-8", sub = "?")
  s[is.na(s)] <- "NA"
  s
}

.securer_json_array <- function(elts) {
  paste0("[", paste(elts, collapse = ","), "]")
}

# Quote strings as JSON (no NAs).
.securer_json_str <- function(s) {
  paste0("\"", .securer_json_esc(s), "\"")
}

# Escape strings for the inside of JSON quotes (no NAs). In a UTF-8 locale
# enc2utf8() would silently turn invalid bytes into "<ff>", so only
# declared latin1 strings are converted there and the rest are checked.
# gsub is far faster than jsonlite's C escaper on long vectors, and
# control characters are rare, so they take a slow path.
.securer_json_esc <- function(s) {
  enc <- Encoding(s)
  conv <- if (isTRUE(l10n_info()[["UTF-8"]])) enc == "latin1" else enc != "bytes"
  if (any(conv)) s[conv] <- enc2utf8(s[conv])
  if (!all(validUTF8(s))) stop("cannot send invalid UTF-8 string", call. = FALSE)
  bytes <- enc == "bytes"
  if (any(bytes)) Encoding(s[bytes]) <- "UTF-8"
  if (any(grepl("\\", s, fixed = TRUE))) s <- gsub("\\", "\\\\", s, fixed = TRUE)
  if (any(grepl("\"", s, fixed = TRUE))) s <- gsub("\"", "\\\"", s, fixed = TRUE)
  ctl <- grepl("[\001-\037]", s, useBytes = TRUE)
  if (any(ctl)) {
    s[ctl] <- vapply(s[ctl], function(e) {
      cp <- utf8ToInt(e)
      ch <- intToUtf8(cp, multiple = TRUE)
      low <- cp < 32L
      ch[low] <- sprintf("\\u%04x", cp[low])
      paste(ch, collapse = "")
    }, "", USE.NAMES = FALSE)
  }
  s
}

# Doubles must round-trip bit-exactly. Short vectors get the shortest of
# 15/16/17 significant digits (readable); long ones go straight to 17,
# which is always exact and avoids formatting most elements twice.
.securer_fmt_dbl <- function(x) {
  out <- character(length(x))
  fin <- is.finite(x)
  y <- x[fin]
  if (length(y) > 10000L) {
    s <- sprintf("%.17g", y)
  } else {
    s <- sprintf("%.15g", y)
    bad <- as.numeric(s) != y
    if (any(bad)) {
      s[bad] <- sprintf("%.16g", y[bad])
      bad <- as.numeric(s) != y
      if (any(bad)) s[bad] <- sprintf("%.17g", y[bad])
    }
  }
  # jsonlite reads "-0" as integer 0; "-0.0" keeps the sign bit.
  s[s == "-0"] <- "-0.0"
  out[fin] <- s
  if (!all(fin)) {
    z <- x[!fin]
    out[!fin] <- ifelse(is.nan(z), "\"NaN\"",
                 ifelse(is.na(z), "\"NA\"",
                 ifelse(z > 0, "\"Inf\"", "\"-Inf\"")))
  }
  out
}

# ---- decoding -------------------------------------------------------------

# refs is the per-decode table of local environments by wire id (box-chosen
# strings, used only as keys here).
.securer_dec <- function(v, depth, refs = new.env(parent = emptyenv())) {
  if (depth > 100L) stop("cannot decode value: nested deeper than 100 levels", call. = FALSE)
  type <- v[["type"]]
  if (!is.character(type) || length(type) != 1L) {
    stop("malformed wire value: missing type", call. = FALSE)
  }
  code <- type %in% c("language", "closure") && identical(getOption("securer.decode_code", TRUE), FALSE)
  if (code) {
    return(.securer_placeholder(if (type == "closure") "function" else "call",
                                paste(unlist(v[[if (type == "closure") "source" else "repr"]]), collapse = "\n")))
  }
  val <- v[["value"]]
  x <- switch(type,
    "NULL" = return(NULL),
    json = return(.securer_dec_json(val)),
    unsupported = return(.securer_placeholder(v[["class"]], paste(unlist(v[["repr"]]), collapse = ""))),
    symbol = return(.securer_dec_symbol(val)),
    primitive = return(.Primitive(.securer_dec_string(v[["name"]], "primitive name"))),
    environment = return(.securer_dec_env(v, depth, refs)),
    language = {
      parts <- .securer_dec_parts(val, depth, refs)
      if (length(parts) == 0L) stop("malformed wire value: empty call", call. = FALSE)
      nm <- as.character(unlist(v[["names"]]))
      if (length(nm) == length(parts) && any(nzchar(nm))) names(parts) <- nm
      as.call(parts)
    },
    closure = {
      fm <- v[["formals"]]
      fv <- .securer_dec_parts(fm[["values"]], depth, refs)
      fn <- as.character(unlist(fm[["names"]]))
      if (length(fn) != length(fv)) stop("malformed wire value: formals names and values differ", call. = FALSE)
      body <- .securer_dec(v[["body"]], depth + 1L, refs)
      env <- .securer_dec_env(v[["env"]], depth + 1L, refs)
      names(fv) <- fn
      f <- function() NULL
      formals(f) <- fv
      body(f) <- body
      environment(f) <- env
      f
    },
    S4 = {
      at <- v[["attributes"]]
      cl <- if (!is.null(at[["class"]])) .securer_dec(at[["class"]], depth + 1L, refs)
      if (!is.character(cl) || length(cl) != 1L) stop("malformed wire value: S4 without a class", call. = FALSE)
      slots <- list()
      for (n in setdiff(names(at), "class")) slots[[n]] <- .securer_dec(at[[n]], depth + 1L, refs)
      return(.securer_dec_s4(cl, slots))
    },
    logical = as.logical(.securer_dec_atomic(val, NA)),
    integer = as.integer(.securer_dec_atomic(val, NA_integer_)),
    character = as.character(.securer_dec_atomic(val, NA_character_)),
    double = .securer_dec_dbl(val),
    complex = {
      n <- length(val)
      re <- im <- rep.int(NA_real_, n)
      ok <- lengths(val) > 0L
      re[ok] <- .securer_dec_dbl(lapply(val[ok], `[[`, "re"))
      im[ok] <- .securer_dec_dbl(lapply(val[ok], `[[`, "im"))
      complex(real = re, imaginary = im)
    },
    raw = jsonlite::base64_dec(val),
    list = {
      if (isTRUE(v[["pairlist"]])) {
        out <- .securer_dec_parts(val, depth, refs)
        nm <- v[["attributes"]][["names"]]
        if (!is.null(nm)) names(out) <- as.character(unlist(nm[["value"]]))
        return(as.pairlist(out))
      }
      # Loop rather than lapply to keep deep nesting within the C stack.
      out <- vector("list", length(val))
      for (i in seq_along(val)) {
        d <- .securer_dec(val[[i]], depth + 1L, refs)
        if (!is.null(d)) out[[i]] <- d
      }
      out
    },
    stop("malformed wire value: unknown type \"", type, "\"", call. = FALSE)
  )
  at <- v[["attributes"]]
  # Source references are never sent (the encoder drops them); one from
  # the box would make print() on the host read the file it names.
  at <- at[!(names(at) %in% .securer_srcref_attrs)]
  if (length(at) > 0L) {
    for (i in seq_along(at)) at[[i]] <- .securer_dec(at[[i]], depth + 1L, refs)
    attributes(x) <- c(attributes(x), at)
  }
  if (isTRUE(v[["s4"]])) x <- asS4(x)
  .securer_inert(x)
}

# Classes whose host print(), format() or show() methods call a function
# the object itself holds (R6: x$print, x$format; ggproto and proto alike)
# or read the file it names (srcref, srcfile: a path, a FIFO, /dev/zero),
# or reach the host's own objects (a connection number).
# A box-made object of such a class would run box-written code or read
# host files as soon as it is printed (by the console, or by the ellmer
# tool): it keeps its data, and its class moves to the attribute
# "securer_class".
.securer_live_classes <- c("R6", "R6ClassGenerator", "ggproto", "proto",
                           "srcref", "srcfile", "srcfilecopy", "srcfilealias",
                           # an integer the host would take for one of its
                           # own open connections (print() names its file)
                           "connection",
                           # print() builds a ggplot: it evaluates the
                           # plot's box-written mappings and ggproto methods
                           "gg", "ggplot",
                           # print() shows HTML in the viewer with the box's
                           # scripts, copying the host directories that its
                           # dependencies name beside them
                           "htmlwidget", "html_dependency", "shiny.tag",
                           "shiny.tag.list", "shiny.tag.function")
.securer_inert <- function(x) {
  cl <- attr(x, "class", exact = TRUE)
  if (is.null(cl) || !any(cl %in% .securer_live_classes)) return(x)
  attr(x, "class") <- NULL
  attr(x, "securer_class") <- cl
  x
}

.securer_dec_string <- function(s, what) {
  if (!is.character(s) || length(s) != 1L || is.na(s)) stop("malformed wire value: bad ", what, call. = FALSE)
  s
}

.securer_dec_symbol <- function(val) {
  s <- .securer_dec_string(val, "symbol")
  if (!nzchar(s)) quote(expr = ) else as.name(s)
}

# Parts of a call, pairlist or formals; the empty symbol (a missing
# argument) is put in place, never passed around.
.securer_dec_parts <- function(val, depth, refs) {
  out <- vector("list", length(val))
  for (i in seq_along(val)) {
    p <- val[[i]]
    if (identical(p[["type"]], "symbol") && identical(p[["value"]], "")) {
      out[i] <- list(quote(expr = ))
    } else {
      d <- .securer_dec(p, depth + 1L, refs)
      if (!is.null(d)) out[[i]] <- d
    }
  }
  out
}

# Well-known environments become the host's own (a namespace only if it is
# already loaded: decoding never loads code); a local one becomes a new
# environment whose parent is the global environment, so that what a
# formula or function calls resolves on the host.
.securer_dec_env <- function(v, depth, refs) {
  if (depth > 100L) stop("cannot decode value: nested deeper than 100 levels", call. = FALSE)
  if (!identical(v[["type"]], "environment")) stop("malformed wire value: env is not an environment", call. = FALSE)
  kind <- .securer_dec_string(v[["kind"]], "environment kind")
  switch(kind,
    global = , package = globalenv(),
    base = baseenv(),
    empty = emptyenv(),
    namespace = {
      name <- .securer_dec_string(v[["name"]], "namespace name")
      if (isNamespaceLoaded(name)) asNamespace(name) else new.env(parent = globalenv())
    },
    local = {
      ref <- v[["ref"]]
      if (!is.null(ref)) {
        ref <- .securer_dec_string(ref, "environment ref")
        if (!exists(ref, envir = refs, inherits = FALSE)) stop("malformed wire value: unknown environment ref", call. = FALSE)
        return(get(ref, envir = refs, inherits = FALSE))
      }
      id <- .securer_dec_string(v[["id"]], "environment id")
      e <- new.env(parent = globalenv())
      assign(id, e, envir = refs)
      nm <- as.character(unlist(v[["names"]]))
      vals <- v[["values"]]
      if (length(nm) != length(vals)) stop("malformed wire value: environment names and values differ", call. = FALSE)
      for (i in seq_along(nm)) {
        d <- .securer_dec(vals[[i]], depth + 1L, refs)
        assign(nm[[i]], d, envir = e)
      }
      dropped <- v[["dropped"]]
      if (is.numeric(dropped) && dropped > 0) attr(e, "securer_dropped") <- as.integer(dropped)
      at <- v[["attributes"]]
      at <- at[!(names(at) %in% .securer_srcref_attrs)]
      for (n in names(at)) attr(e, n) <- .securer_dec(at[[n]], depth + 1L, refs)
      .securer_inert(e)
    },
    stop("malformed wire value: unknown environment kind", call. = FALSE))
}

# An S4 object from the class's prototype on the host (new() would run
# initialize methods); a class the host does not define gives a
# securer_s4 placeholder holding the slots.
.securer_dec_s4 <- function(cl, slots) {
  # By name only, looked up from the global environment: getClassDef()
  # would load the package a class's "package" attribute names. The host's
  # class may live under another package name than the box's (a package,
  # a test's environment), so the host's className is kept.
  def <- if (isNamespaceLoaded("methods")) {
    methods::getClassDef(as.vector(cl), where = globalenv(), package = "")
  }
  if (!is.null(def)) cl <- def@className
  # A reference class's show() calls object$show(), a function the box
  # wrote: such an object is not rebuilt.
  if (is.null(def) || methods::extends(def, "envRefClass")) {
    return(structure(list(class = cl, slots = slots), class = c("securer_s4", "securer_unsupported")))
  }
  x <- def@prototype
  for (n in names(slots)) attr(x, n) <- slots[[n]]
  attr(x, "class") <- cl
  asS4(x)
}

# JSON nulls (NULL after parsing) mean NA; everything else is a scalar.
.securer_dec_atomic <- function(val, na) {
  if (length(val) == 0L) return(NULL)
  val[lengths(val) == 0L] <- list(na)
  unlist(val, use.names = FALSE)
}

.securer_dec_dbl <- function(val) {
  n <- length(val)
  if (n == 0L) return(double(0))
  if (any(lengths(val) != 1L)) stop("malformed wire value: null in double vector", call. = FALSE)
  u <- unlist(val, use.names = FALSE)
  if (is.numeric(u)) return(as.double(u))
  # Mixed numbers and special strings: never coerce numbers through
  # character, which would lose digits.
  chr <- vapply(val, is.character, NA, USE.NAMES = FALSE)
  out <- numeric(n)
  out[!chr] <- as.double(unlist(val[!chr], use.names = FALSE))
  sp <- unlist(val[chr], use.names = FALSE)
  i <- match(sp, c("NA", "NaN", "Inf", "-Inf"))
  if (anyNA(i)) stop("malformed wire value: bad double \"", sp[is.na(i)][1L], "\"", call. = FALSE)
  out[chr] <- c(NA_real_, NaN, Inf, -Inf)[i]
  out
}

# The json type must become what fromJSON(txt, simplifyVector = TRUE) gives.
# The parsed (unsimplified) tree is already here, so apply the same
# simplification step fromJSON uses rather than re-serialising, which
# would lose digits.
.securer_dec_json <- function(val) {
  simplify <- get("simplify", envir = asNamespace("jsonlite"), inherits = FALSE)
  simplify(val, simplifyVector = TRUE, simplifyDataFrame = TRUE,
           simplifyMatrix = TRUE, flatten = FALSE)
}
