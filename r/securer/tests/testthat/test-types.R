test_that("the six type strings are checked before the tool runs", {
  ran <- 0
  mk <- function(type) securer_tool("f", "check", fn = function(x) { ran <<- ran + 1; "ran" }, args = list(x = type))
  cases <- list(
    numeric = c(ok = "1.5", bad = '"a"'),
    character = c(ok = '"a"', bad = "1"),
    logical = c(ok = "TRUE", bad = '"TRUE"'),
    integer = c(ok = "1L", bad = "1.5"),
    list = c(ok = "list(1)", bad = "1"),
    data.frame = c(ok = "data.frame(a = 1)", bad = "list(a = 1)")
  )
  for (type in names(cases)) {
    tools <- list(mk(type))
    expect_equal(execute_r(sprintf("f(%s)", cases[[type]][["ok"]]), tools = tools), "ran", info = type)
    before <- ran
    expect_error(execute_r(sprintf("f(%s)", cases[[type]][["bad"]]), tools = tools), "must be", info = type)
    expect_equal(ran, before, info = type)
  }
  expect_error(securer_tool("f", "x", function(x) x, args = list(x = "float")), "unknown type")
  expect_error(securer_tool("bad name", "x", function() 1), "valid R identifier")
  expect_error(securer_tool("f", "x", function(x) x, args = list(y = "numeric")), NA)
})

test_that("values keep their R types both ways", {
  echo <- securer_tool("echo", "Return the argument", fn = function(x) x)
  s <- SecureSession$new(tools = list(echo), sandbox = TRUE)
  on.exit(s$close())
  values <- list(
    1L, c(1.5, NA, Inf), c(TRUE, NA), c("a", NA, "\u00e9"), NULL, list(a = 1, b = list("x")),
    factor(c("lo", "hi", "lo")), as.Date("2024-01-02"), matrix(1:6, 2),
    data.frame(n = 1:2, s = c("a", "b")), as.raw(c(0, 255)), complex(real = 1, imaginary = -2)
  )
  for (v in values) {
    code <- paste0("echo(", paste(deparse(v), collapse = ""), ")")
    expect_identical(s$execute(code), v, info = code)
  }
  # A host value reaches R typed, and comes back unchanged.
  int_tool <- securer_tool("ints", "integers", fn = function() c(1L, NA, 3L))
  expect_identical(execute_r("x <- ints(); stopifnot(is.integer(x)); x", tools = list(int_tool)), c(1L, NA, 3L))
})

test_that("a tool's error is an R error inside", {
  boom <- securer_tool("boom", "fails", fn = function() stop("host says no"))
  expect_equal(execute_r("tryCatch(boom(), error = function(e) conditionMessage(e))", tools = list(boom)),
               "host says no")
})

test_that("validate_code", {
  v <- validate_code("1 +")
  expect_false(v$valid)
  expect_true(nzchar(v$error))
  v <- validate_code("system('ls'); x <- 1")
  expect_true(v$valid)
  expect_match(v$warnings, "system\\(\\)")
  expect_length(validate_code("1 + 1")$warnings, 0)
})
