# Issue 13, "ellmer fit": what the ellmer tool hands the model. The
# content-building functions run without ellmer (not installed here).

test_that("ellmer fit: the tool's text is output, the printed value, and errors with their traceback", {
  expect_identical(securer:::.securer_tool_text(list(value = 5, visible = TRUE, output = character())), "[1] 5")
  expect_identical(securer:::.securer_tool_text(list(value = NULL, visible = FALSE, output = c("a", "b"))), "a\nb")
  expect_identical(securer:::.securer_tool_text(list(value = structure(1, output = "x"), visible = TRUE, output = "x")),
                   "x\n[1] 1")
  e <- structure(class = c("securer_execution_error", "error", "condition"),
                 list(message = "boom", call = NULL, output = "before", traceback = paste0("f", 1:15, "()")))
  txt <- securer:::.securer_tool_text(list(error = e, output = e$output))
  expect_match(txt, "^before\nError: boom\nTraceback \\(innermost last\\):\n  f1\\(\\)")
  expect_match(txt, "f10\\(\\)\n  \\[\\.\\.\\. 5 more calls\\]$")
  expect_identical(securer:::.securer_tool_text(list(value = NULL, visible = FALSE, output = character())), "(no output)")
})

test_that("ellmer fit: long text keeps its head and its tail", {
  text <- paste(sprintf("line %05d", 1:50000), collapse = "\n")
  t <- securer:::.securer_truncate(text, 20000)
  expect_lte(nchar(t), 20100)
  expect_match(t, "^line 00001\n")
  expect_match(t, "\nline 50000$")
  kept <- length(strsplit(t, "\n")[[1]]) - 1
  expect_match(t, sprintf("\\[\\.\\.\\. %d lines omitted \\.\\.\\.\\]", 50000 - kept))
  expect_identical(securer:::.securer_truncate("short", 20000), "short")
  one <- strrep("x", 50000)
  expect_lte(nchar(securer:::.securer_truncate(one, 20000)), 20100)
})

test_that("ellmer fit: plots become image content next to the text, all of it content", {
  p <- structure(as.raw(c(0x89, 0x50, 0x4e, 0x47)), class = "securer_plot", width = 768, height = 576)
  # ellmer shows a tool's list as content only when every element is
  # content: the text must be a content object too, not a bare string.
  fake <- list(text = function(t) structure(list(text = t), class = c("fake_text", "fake_content")),
               image = function(type, data) structure(list(type = type, data = data), class = c("fake_image", "fake_content")))
  c2 <- securer:::.securer_tool_content("text", list(p, p), fake)
  expect_length(c2, 3)
  expect_true(all(vapply(c2, inherits, TRUE, "fake_content")))
  expect_s3_class(c2[[1]], "fake_text")
  expect_identical(c2[[1]]$text, "text")
  expect_s3_class(c2[[2]], "fake_image")
  expect_identical(c2[[2]]$type, "image/png")
  expect_identical(jsonlite::base64_dec(c2[[3]]$data), as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  # Without image support (an older ellmer): the text, saying plots were drawn.
  expect_identical(securer:::.securer_tool_content("text", list(p), NULL), "text\n[1 plot(s) drawn; not shown]")
  expect_identical(securer:::.securer_tool_content("text", NULL, fake), "text")
})

test_that("ellmer fit: securer_as_ellmer_tool is a deprecated alias", {
  expect_true(is.function(securer::securer_as_ellmer_tool))
  if (!requireNamespace("ellmer", quietly = TRUE)) {
    expect_warning(expect_error(securer_as_ellmer_tool(), "needs the ellmer package"), class = "deprecatedWarning")
  }
})
