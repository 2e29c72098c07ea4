# Issue 13, item 1: every value comes back (code, models, environments, S4),
# as itself or as a placeholder, never as an error.

test_that("a function definition comes back as a function", {
  f <- execute_r("function(x, y = 2) x^y")
  expect_true(is.function(f))
  expect_identical(names(formals(f)), c("x", "y"))
  expect_identical(f(3), 9)
  expect_identical(environment(f), globalenv())
})

test_that("an assignment of a function returns invisibly without error", {
  expect_invisible(v <- execute_r("square <- function(x) x^2"))
  expect_true(is.function(v))
  expect_identical(v(4), 16)
})

test_that("lm, summary(lm) and predict() match the host's", {
  host <- lm(mpg ~ wt, data = mtcars)
  fit <- execute_r("lm(mpg ~ wt, data = mtcars)")
  expect_s3_class(fit, "lm")
  expect_identical(coef(fit), coef(host))
  expect_identical(predict(fit, data.frame(wt = 3)), predict(host, data.frame(wt = 3)))
  nd <- data.frame(wt = c(2.5, 4.5))
  expect_identical(predict(fit, nd, interval = "confidence"), predict(host, nd, interval = "confidence"))
  s <- execute_r("summary(lm(mpg ~ wt, data = mtcars))")
  expect_s3_class(s, "summary.lm")
  expect_identical(coef(s), coef(summary(host)))
  g <- execute_r("glm(am ~ wt, data = mtcars, family = binomial)")
  hg <- glm(am ~ wt, data = mtcars, family = binomial)
  expect_identical(predict(g, nd, type = "response"), predict(hg, nd, type = "response"))
})

test_that("formulas, calls and symbols come back as language objects", {
  fo <- execute_r("y ~ x + log(z)")
  expect_s3_class(fo, "formula")
  expect_identical(deparse(fo), "y ~ x + log(z)")
  expect_identical(environment(fo), globalenv())
  expect_identical(execute_r("quote(x + 1)"), quote(x + 1))
  expect_identical(execute_r("quote(f(a = 1, b))"), quote(f(a = 1, b)))
  expect_identical(execute_r("as.name('abc')"), as.name("abc"))
  expect_identical(execute_r("sum"), sum)
})

test_that("environments come back bounded, with cycles kept", {
  e <- execute_r("e <- new.env(); e$a <- 1; e$self <- e; e$get_a <- local(function() a, e); e")
  expect_true(is.environment(e))
  expect_identical(sort(ls(e)), c("a", "get_a", "self"))
  expect_identical(e$self, e)
  expect_identical(e$get_a(), 1)
  big <- execute_r("e <- new.env(); for (i in 1:10000) e[[paste0('v', i)]] <- i; e")
  expect_length(ls(big), 100)
  expect_identical(attr(big, "securer_dropped"), 9900L)
  empty <- execute_r("new.env()")
  expect_true(is.environment(empty))
  expect_length(ls(empty), 0)
})

test_that("S4 objects come back, or as a placeholder when the host lacks the class", {
  setClass("Securer13Point", representation(x = "numeric", label = "character"))
  on.exit(removeClass("Securer13Point"))
  p <- execute_r('setClass("Securer13Point", representation(x = "numeric", label = "character"))
                  new("Securer13Point", x = 1.5, label = "p")')
  expect_true(isS4(p))
  expect_true(is(p, "Securer13Point"))
  expect_identical(p@x, 1.5)
  expect_true(validObject(p))
  q <- execute_r('setClass("Securer13Unknown", representation(v = "integer")); new("Securer13Unknown", v = 1:3)')
  expect_s3_class(q, "securer_s4")
  expect_identical(q$class, structure("Securer13Unknown", package = ".GlobalEnv"))
  expect_identical(q$slots$v, 1:3)
})

test_that("values that cannot cross are placeholders that print, never errors", {
  ptr <- execute_r('methods::new("externalptr")')
  expect_s3_class(ptr, "securer_unsupported")
  expect_identical(ptr$class, "externalptr")
  expect_output(print(ptr), "did not cross \\(externalptr\\)")
  # Invisible: NULL, not a placeholder.
  expect_null(execute_r('p <- methods::new("externalptr")'))
})

test_that("options(securer.decode_code = FALSE) gives placeholders for code", {
  old <- options(securer.decode_code = FALSE)
  on.exit(options(old))
  f <- execute_r("function(x) x + 1")
  expect_s3_class(f, "securer_unsupported")
  expect_identical(f$class, "function")
  expect_match(f$repr, "x + 1", fixed = TRUE)
  fit <- execute_r("lm(mpg ~ wt, data = mtcars)")
  expect_s3_class(fit$terms, "securer_unsupported")
  expect_identical(length(coef(fit)), 2L)
})

test_that("a tool can receive a function from the box", {
  apply_fn <- securer_tool("apply_fn", "Call f on 2", fn = function(f) f(2))
  expect_identical(execute_r("apply_fn(function(x) x * 10)", tools = list(apply_fn)), 20)
  echo <- securer_tool("echo", "Return the argument", fn = function(x) x)
  expect_identical(execute_r("identical(echo(y ~ x), y ~ x)", tools = list(echo)), TRUE)
})

test_that("a value the package cannot rebuild is a placeholder with a warning", {
  dec <- getFromNamespace(".securer_decode", "securer")
  expect_warning(x <- dec(list(type = "bogus")), "could not be decoded")
  expect_s3_class(x, "securer_unsupported")
  expect_warning(y <- dec(list(type = "environment", kind = "local", ref = "e9")), "unknown environment ref")
  expect_s3_class(y, "securer_unsupported")
  expect_warning(z <- dec(list(type = "primitive", name = "not_a_primitive")), "could not be decoded")
  expect_s3_class(z, "securer_unsupported")
})
