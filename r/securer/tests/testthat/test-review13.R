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
