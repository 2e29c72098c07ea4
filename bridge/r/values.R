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
  .securer_enc(x, 1L)
}

# .securer_decode(v) -> R value, where v is
# jsonlite::fromJSON(txt, simplifyVector = FALSE) of a wire value.
.securer_decode <- function(v) {
  .securer_dec(v, 1L)
}

# ---- encoding -------------------------------------------------------------

.securer_enc <- function(x, depth) {
  if (depth > 100L) {
    stop("cannot send value: nested deeper than 100 levels", call. = FALSE)
  }
  if (isS4(x) || !(typeof(x) %in% c("NULL", "logical", "integer", "double",
                                     "character", "list", "raw", "complex"))) {
    return(.securer_enc_unsupported(x))
  }
  if (is.null(x)) return("{\"type\":\"NULL\"}")
  attrs <- .securer_enc_attrs(x, depth)
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
      for (i in seq_along(x)) s[i] <- .securer_enc(x[[i]], depth + 1L)
      .securer_json_array(s)
    },
    # base64_enc wraps lines; the wire wants one unbroken string.
    raw = paste0("\"", gsub("\n", "", jsonlite::base64_enc(x), fixed = TRUE), "\"")
  )
  out <- paste0("{\"type\":\"", typeof(x), "\",\"value\":", val)
  if (!is.null(attrs)) out <- paste0(out, ",\"attributes\":", attrs)
  paste0(out, "}")
}

.securer_enc_attrs <- function(x, depth) {
  a <- attributes(x)
  if (is.null(a)) return(NULL)
  # attributes() expands compact row names (c(NA, -n)) to 1:n, and setting
  # 1:n back does not always re-compact, so send the stored form.
  if (!is.null(a[["row.names"]])) a[["row.names"]] <- .row_names_info(x, 0L)
  # Attributes that cannot cross (e.g. data.table's external pointer) are
  # dropped rather than making the whole value unsupported.
  keep <- vapply(a, function(v) {
    !isS4(v) && typeof(v) %in% c("logical", "integer", "double", "character",
                                 "list", "raw", "complex")
  }, NA, USE.NAMES = FALSE)
  a <- a[keep]
  if (length(a) == 0L) return(NULL)
  vals <- character(length(a))
  for (i in seq_along(a)) vals[i] <- .securer_enc(a[[i]], depth + 1L)
  keys <- .securer_json_str(names(a))
  paste0("{", paste0(keys, ":", vals, collapse = ","), "}")
}

.securer_enc_unsupported <- function(x) {
  cls <- .securer_lossy_utf8(as.character(class(x)))
  repr <- tryCatch(
    paste(deparse(x, width.cutoff = 80L, nlines = 40L), collapse = "\n"),
    error = function(e) paste0("<", typeof(x), ">")
  )
  repr <- .securer_lossy_utf8(repr)
  if (nchar(repr) > 1000L) repr <- paste0(substr(repr, 1L, 997L), "...")
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

.securer_dec <- function(v, depth) {
  if (depth > 100L) stop("cannot decode value: nested deeper than 100 levels", call. = FALSE)
  type <- v[["type"]]
  if (!is.character(type) || length(type) != 1L) {
    stop("malformed wire value: missing type", call. = FALSE)
  }
  val <- v[["value"]]
  x <- switch(type,
    "NULL" = return(NULL),
    json = return(.securer_dec_json(val)),
    unsupported = stop("cannot decode a value of type \"unsupported\" (class ",
                       paste(unlist(v[["class"]]), collapse = "/"), ")", call. = FALSE),
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
      # Loop rather than lapply to keep deep nesting within the C stack.
      out <- vector("list", length(val))
      for (i in seq_along(val)) {
        d <- .securer_dec(val[[i]], depth + 1L)
        if (!is.null(d)) out[[i]] <- d
      }
      out
    },
    stop("malformed wire value: unknown type \"", type, "\"", call. = FALSE)
  )
  at <- v[["attributes"]]
  if (length(at) > 0L) {
    for (i in seq_along(at)) at[[i]] <- .securer_dec(at[[i]], depth + 1L)
    attributes(x) <- at
  }
  x
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
