# Review of issue 13: the box controls the values the host decodes and
# the text the ellmer tool hands the model. Printing a decoded value must
# never run a function the box wrote. No server needed.

roundtrip <- function(x) {
  securer:::.securer_decode(jsonlite::fromJSON(securer:::.securer_encode(x), simplifyVector = FALSE))
}

test_that("a box-made R6-classed object does not run its own print or format on the host", {
  ran <- new.env()
  ran$n <- 0
  # What the box sends: the print function's body is box code; here it
  # counts, in the box it would call system().
  hostile <- list(
    list = structure(list(print = function(...) assign("n", n + 1, envir = ran),
                          format = function(...) assign("n", n + 1, envir = ran)), class = "R6"),
    env = local({
      e <- new.env()
      e$print <- function(...) assign("n", n + 1, envir = ran)
      class(e) <- c("Thing", "R6")
      e
    }),
    ggproto = structure(list(print = function(...) assign("n", n + 1, envir = ran)), class = c("ggproto", "gg"))
  )
  for (nm in names(hostile)) {
    v <- roundtrip(hostile[[nm]])
    # The decoded function is still box code bound to a host env; make
    # calling it observable here.
    fn <- if (is.environment(v)) v$print else v[["print"]]
    environment(fn) <- list2env(list(ran = ran), parent = environment())
    if (is.environment(v)) v$print <- fn else v[["print"]] <- fn
    utils::capture.output(print(v), format(v))
    expect_equal(ran$n, 0, info = nm)
    expect_true(any(c("R6", "ggproto") %in% attr(v, "securer_class")), info = nm)
  }
})

test_that("a box-made reference class object is not rebuilt (its show() is box code)", {
  enc <- securer:::.securer_encode
  e <- new.env()
  e$show <- function() stop("box show() ran on the host")
  # What a hostile box can write: an S4 envRefClass whose .xData holds show.
  wire <- sprintf('{"type":"S4","attributes":{"class":%s,".xData":%s}}', enc("envRefClass"), enc(e))
  v <- securer:::.securer_decode(jsonlite::fromJSON(wire, simplifyVector = FALSE))
  expect_false(methods::is(v, "envRefClass"))
  expect_s3_class(v, "securer_unsupported")
  expect_no_error(utils::capture.output(print(v)))
})

test_that("the ellmer tool's text is the box's printed form, never a host print", {
  hostile <- structure(list(print = function(...) stop("host print ran")), class = "R6")
  txt <- securer:::.securer_tool_text(list(value = hostile, visible = TRUE, output = "out",
                                           printed = "<box printed>"))
  expect_identical(txt, "out\n<box printed>")
  expect_identical(securer:::.securer_tool_text(list(value = 5, visible = TRUE, output = character(), printed = "")),
                   "(no output)")
})

test_that("R6 objects of the host itself are left alone", {
  Gen <- R6::R6Class("Review13", public = list(x = 1))
  obj <- Gen$new()
  expect_identical(securer:::.securer_inert(obj), obj)
  expect_identical(securer:::.securer_inert(structure(1, class = "foo")), structure(1, class = "foo"))
})

test_that("output_dir takes at most 16 files and 6 MiB, however many the box lists", {
  # A session as .securer_with_files uses it: the box lists 1000 files
  # of 4 MiB (sparse in the box, real on this disk).
  fake <- new.env()
  fake$fetched <- 0
  fake$get_file <- function(name) {
    fake$fetched <- fake$fetched + 1
    raw(if (name %in% c("f0001", "f0002")) 1024 else 4 * 1024^2)
  }
  fake$list_files <- function() data.frame(name = sprintf("f%04d", 1:1000),
                                           size = c(1024, 1024, rep(4 * 1024^2, 998)), stringsAsFactors = FALSE)
  out <- tempfile()
  dir.create(out)
  on.exit(unlink(out, recursive = TRUE))
  expect_warning(v <- securer:::.securer_with_files(fake, NULL, out, 42), class = "securer_files_dropped")
  expect_equal(v, 42)
  written <- list.files(out)
  expect_lte(length(written), 16)
  expect_lte(sum(file.size(file.path(out, written))), 6 * 1024^2)
  expect_equal(written[1:2], c("f0001", "f0002"))
  expect_lte(fake$fetched, 16)
})

test_that("a box-made source reference does not make print() read a host file", {
  secret <- tempfile()
  writeLines(c("host secret 1", "host secret 2"), secret)
  enc <- securer:::.securer_encode
  sf <- new.env()
  sf$filename <- secret
  sf$wd <- "/"
  sf$Enc <- "unknown"
  sf$encoding <- "native.enc"
  srcfile <- sub("}$", sprintf(',"attributes":{"class":%s}}', enc("srcfile")), enc(sf))
  wires <- c(
    srcref = sprintf('{"type":"integer","value":[1,1,2,13,1,13,1,2],"attributes":{"srcfile":%s,"class":%s}}', srcfile, enc("srcref")),
    closure = sub("}$", sprintf(',"attributes":{"srcref":{"type":"integer","value":[1,1,2,13,1,13,1,2],"attributes":{"srcfile":%s,"class":%s}}}}',
                                srcfile, enc("srcref")), enc(function(x) x)))
  for (nm in names(wires)) {
    v <- securer:::.securer_decode(jsonlite::fromJSON(wires[[nm]], simplifyVector = FALSE))
    shown <- paste(utils::capture.output(print(v)), collapse = "\n")
    expect_false(grepl("host secret", shown), info = nm)
  }
})

test_that("a box-made connection number is not the host's connection", {
  con <- file(tempfile("host-open-"), "w")
  on.exit(close(con))
  v <- securer:::.securer_decode(jsonlite::fromJSON(securer:::.securer_encode(structure(as.integer(con), class = c("file", "connection"))),
                                                    simplifyVector = FALSE))
  expect_false(inherits(v, "connection"))
  expect_false(any(grepl("host-open-", utils::capture.output(print(v)))))
})

test_that("a plot is drawn only when its PNG header gives a sane size", {
  png_head <- function(w, h) {
    be <- function(n) as.raw(c(n %/% 2^24, n %/% 2^16 %% 256, n %/% 256 %% 256, n %% 256))
    c(as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13)), charToRaw("IHDR"), be(w), be(h), raw(20))
  }
  expect_true(securer:::.securer_png_drawable(structure(png_head(768, 576), class = "securer_plot")))
  expect_false(securer:::.securer_png_drawable(structure(png_head(100000, 100000), class = "securer_plot")))
  expect_false(securer:::.securer_png_drawable(structure(png_head(0, 10), class = "securer_plot")))
  expect_false(securer:::.securer_png_drawable(structure(as.raw(1:10), class = "securer_plot")))
  expect_false(securer:::.securer_png_drawable(structure("not raw", class = "securer_plot")))
})

test_that("box-made ggplot and HTML objects are inert on the host", {
  for (cl in list(c("gg", "ggplot"), "htmlwidget", "html_dependency", c("shiny.tag.function", "function"), "shiny.tag")) {
    x <- structure(list(mapping = quote(system("id")), src = list(file = "/")), class = cl)
    v <- securer:::.securer_decode(jsonlite::fromJSON(securer:::.securer_encode(x), simplifyVector = FALSE))
    expect_null(attr(v, "class"), info = cl[1])
    expect_identical(attr(v, "securer_class"), cl, info = cl[1])
  }
})
