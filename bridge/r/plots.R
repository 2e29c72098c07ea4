# Plots: every page an execution draws comes back as an image.
# Part of the R runtime: main.R evaluates this file inside its local()
# environment, where rt is the runtime's environment; it only defines rt's
# functions.
#
# Per execution the runtime sets a lazy default device
# (options(device = ...)): nothing is opened until the code draws, so
# plot-free code costs nothing and sees no device. Each opening writes
# with a new file prefix, so that a page drawn after the code's own
# dev.off() cannot overwrite an earlier one. After the code (also after
# an error or an interrupt) the devices it opened are closed and the
# files read in order, then deleted.

rt$plot_defaults <- list(format = "png", width = 768L, height = 576L, dpi = 96L)
rt$plot_limits <- list(count = 20L, each = 2 * 1024^2, total = 4 * 1024^2)
rt$png_magic <- as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a))
# png_is: data is a PNG whose header says width x height, as the host
# checks (a page of another size breaks the protocol).
rt$png_is <- function(data, width, height) {
  if (length(data) < 24L || !identical(data[1:8], rt$png_magic) || !identical(rawToChar(data[13:16]), "IHDR")) return(FALSE)
  be <- function(b) sum(as.numeric(b) * 256^(3:0))
  be(data[17:20]) == width && be(data[21:24]) == height
}

# plot_options is the execution's plots request, with the defaults for
# what is missing and each number within its bounds (the host checks
# them too).
rt$plot_options <- function(p) {
  o <- rt$plot_defaults
  if (is.list(p)) for (k in intersect(names(p), names(o))) if (length(p[[k]]) == 1L) o[[k]] <- p[[k]]
  num <- function(x, lo, hi, def) {
    x <- suppressWarnings(as.integer(x))
    if (length(x) != 1L || is.na(x)) def else min(max(x, lo), hi)
  }
  o$width <- num(o$width, 16L, 4096L, 768L)
  o$height <- num(o$height, 16L, 4096L, 576L)
  o$dpi <- num(o$dpi, 36L, 600L, 96L)
  if (!(is.character(o$format) && o$format %in% c("png", "svg", "none"))) o$format <- "png"
  o
}

# plots_begin installs the lazy device for one execution; NULL when the
# execution asked for none.
rt$plots_begin <- function(p) {
  o <- rt$plot_options(p)
  if (identical(o$format, "none")) return(NULL)
  st <- new.env(parent = emptyenv())
  st$o <- o
  st$dir <- file.path(tempdir(), "securer-plots")
  st$opened <- 0L
  st$devices <- integer()
  unlink(st$dir, recursive = TRUE)
  st$opener <- function(...) {
    if (!dir.exists(st$dir)) dir.create(st$dir, mode = "0700")
    st$opened <- st$opened + 1L
    file <- file.path(st$dir, sprintf("d%05d-%%03d.%s", st$opened, st$o$format))
    if (identical(st$o$format, "svg")) {
      grDevices::svg(file, width = st$o$width / st$o$dpi, height = st$o$height / st$o$dpi, onefile = FALSE)
    } else {
      grDevices::png(file, width = st$o$width, height = st$o$height, res = st$o$dpi, type = "cairo")
    }
    st$devices <- c(st$devices, grDevices::dev.cur())
    invisible(NULL)
  }
  st$previous <- options(device = st$opener)
  st
}

# plots_end closes the devices the lazy opener opened (the code's own are
# left alone), puts back the device option unless the code set its own,
# and returns the pages as displays JSON within budget bytes:
# list(json, dropped).
rt$plots_end <- function(st, budget) {
  if (is.null(st)) return(list(json = "[]", dropped = 0))
  for (d in intersect(st$devices, grDevices::dev.list())) try(grDevices::dev.off(d), silent = TRUE)
  if (identical(getOption("device"), st$opener)) options(st$previous)
  files <- list.files(st$dir, pattern = "^d[0-9]+-[0-9]+\\.(png|svg)$")
  if (length(files) == 0L) {
    unlink(st$dir, recursive = TRUE)
    return(list(json = "[]", dropped = 0))
  }
  # In drawing order: by opening, then by page.
  key <- regmatches(files, regexec("^d([0-9]+)-([0-9]+)\\.", files))
  files <- files[order(as.numeric(vapply(key, `[`, "", 2L)), as.numeric(vapply(key, `[`, "", 3L)))]
  mime <- if (identical(st$o$format, "svg")) "image/svg+xml" else "image/png"
  meta <- sprintf('"metadata":{"width":%d,"height":%d,"dpi":%d}', st$o$width, st$o$height, st$o$dpi)
  lim <- rt$plot_limits
  kept <- character()
  total <- 0
  encoded <- 0
  dropped <- 0
  for (f in file.path(st$dir, files)) {
    size <- file.size(f)
    if (length(kept) >= lim$count || is.na(size) || size == 0 || size > lim$each || total + size > lim$total) {
      dropped <- dropped + 1
      next
    }
    data <- tryCatch(readBin(f, "raw", size), error = function(e) NULL)
    # The code can write into the plot dir: a file that is not what its
    # name says is dropped (the host would refuse it).
    if (length(data) != size || (identical(mime, "image/png") && !rt$png_is(data, st$o$width, st$o$height))) {
      dropped <- dropped + 1
      next
    }
    # base64_enc wraps lines; JSON strings cannot hold them.
    one <- paste0('{"data":{"', mime, '":"', gsub("\n", "", jsonlite::base64_enc(data), fixed = TRUE), '"},', meta, "}")
    n <- nchar(one, type = "bytes") + 1
    if (encoded + n > budget) {
      dropped <- dropped + 1
      next
    }
    kept[[length(kept) + 1L]] <- one
    total <- total + size
    encoded <- encoded + n
  }
  unlink(st$dir, recursive = TRUE)
  list(json = paste0("[", paste(kept, collapse = ","), "]"), dropped = dropped)
}
