# as_ellmer_tool() against ellmer when it is installed; otherwise against a
# stand-in package with ellmer 0.3's tool() and type_string() signatures,
# built here, so that the wiring (the tool's name, its one argument, the
# sandboxed execution behind it, errors as text) is tested either way.

stand_in_ellmer <- function() {
  src <- file.path(tempfile("ellmer-src-"), "ellmer")
  lib <- tempfile("ellmer-lib-")
  dir.create(file.path(src, "R"), recursive = TRUE)
  dir.create(lib)
  writeLines(c("Package: ellmer", "Version: 0.0.0.9000", "Title: Stand-in for tests",
               "Description: Stand-in for tests.", "License: MIT", "Encoding: UTF-8"),
             file.path(src, "DESCRIPTION"))
  writeLines("export(tool, type_string)", file.path(src, "NAMESPACE"))
  writeLines(c(
    "tool <- function(fun, description, ..., arguments = list(), name = NULL, convert = TRUE, annotations = list()) {",
    "  stopifnot(is.function(fun), is.character(description), is.list(arguments))",
    "  structure(fun, class = c('stand_in_tool', 'function'), description = description,",
    "            arguments = arguments, name = name)",
    "}",
    "type_string <- function(description = NULL, required = TRUE) list(type = 'string', description = description)"),
    file.path(src, "R", "ellmer.R"))
  out <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-test-load", "-l", shQuote(lib), shQuote(src)),
                 stdout = TRUE, stderr = TRUE)
  if (!dir.exists(file.path(lib, "ellmer"))) stop(paste(out, collapse = "\n"))
  lib
}

test_that("as_ellmer_tool gives an ellmer tool that runs code in the sandbox", {
  if (!requireNamespace("ellmer", quietly = TRUE)) {
    old <- .libPaths()
    .libPaths(c(stand_in_ellmer(), old))
    on.exit({
      .libPaths(old)
      if ("ellmer" %in% loadedNamespaces()) unloadNamespace("ellmer")
    })
    expect_true(requireNamespace("ellmer", quietly = TRUE))
  }
  session <- SecureSession$new(tools = seed_tools(), sandbox = TRUE)
  on.exit(session$close(), add = TRUE)
  tool <- as_ellmer_tool(session = session, timeout = 2)
  expect_true(is.function(tool))
  if (inherits(tool, "stand_in_tool")) {
    expect_equal(attr(tool, "name"), "execute_r_code")
    expect_equal(names(attr(tool, "arguments")), "code")
    expect_match(attr(tool, "description"), "sandbox")
  }
  expect_equal(tool(code = "add(2, 3)"), "[1] 5")
  expect_equal(tool(code = "Sys.info()[['nodename']]"), '[1] "sandbox"')
  expect_match(tool(code = "stop('no such thing')"), "Error: no such thing")
  expect_match(tool(code = "Sys.sleep(30)"), "timed out after 2 second")
  expect_equal(tool(code = "1 + 1"), "[1] 2")
})
