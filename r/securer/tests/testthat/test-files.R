test_that("files go into the work dir and come back", {
  s <- SecureSession$new(sandbox = TRUE)
  on.exit(s$close())
  csv <- tempfile(fileext = ".csv")
  write.csv(data.frame(x = 1:3, y = c(2, 4, 6)), csv, row.names = FALSE)
  expect_equal(s$put_file(csv, "in/data.csv"), "in/data.csv")
  expect_equal(s$execute('d <- read.csv("in/data.csv"); write.csv(d * 2, "out.csv", row.names = FALSE); sum(d$y)'), 12)
  expect_equal(s$execute("getwd()"), "/tmp/work")
  got <- s$get_file("out.csv")
  expect_type(got, "raw")
  expect_equal(read.csv(text = rawToChar(got)), data.frame(x = c(2, 4, 6), y = c(4, 8, 12)))
  local <- tempfile()
  expect_equal(s$get_file("out.csv", local), local)
  expect_identical(readBin(local, "raw", 1e6), got)
  l <- s$list_files()
  expect_equal(l$name, c("in/data.csv", "out.csv"))
  expect_equal(l$size, c(file.size(csv), length(got)))

  # Links are refused, names that leave the work dir too (here and on
  # the server), and files over the limit.
  s$execute('file.symlink("/etc/passwd", "x")')
  expect_error(s$get_file("x"), "not a regular file.*file_refused")
  expect_error(s$get_file("../x"), "is refused")
  expect_error(s$put_file(csv, "/etc/x"), "is refused")
  big <- tempfile()
  writeBin(raw(4 * 1024^2 + 1), big)
  expect_error(s$put_file(big, "big"), "limit per file")
  s$execute('writeBin(raw(4 * 1024^2 + 1), "big.bin")')
  expect_error(s$get_file("big.bin"), "limit per file")
  expect_true(s$is_alive())
})

test_that("execute_r takes files and writes what the code made to output_dir", {
  dir <- tempfile()
  dir.create(dir)
  out <- file.path(dir, "out")
  dir.create(out)
  input <- file.path(dir, "numbers.txt")
  writeLines(as.character(1:10), input)
  other <- file.path(dir, "other")
  dir.create(other)
  file.symlink(other, file.path(out, "linked"))
  v <- execute_r('x <- as.numeric(readLines("data/n.txt")); dir.create("res")
                  writeLines(format(sum(x)), "res/sum.txt"); writeLines("u", "untouched.txt"); sum(x)',
                 files = c("data/n.txt" = input), output_dir = out)
  expect_equal(v, 55)
  expect_equal(readLines(file.path(out, "res", "sum.txt")), "55")
  expect_equal(readLines(file.path(out, "untouched.txt")), "u")
  # The unchanged input is not written back.
  expect_false(file.exists(file.path(out, "data")))
  # A link already in output_dir is not followed.
  # It is refused with a warning; the value still comes back.
  expect_warning(v <- execute_r('dir.create("linked"); writeLines("no", "linked/f.txt"); 7', output_dir = out),
                 "symbolic link", class = "securer_file_not_written")
  expect_equal(v, 7)
  expect_false(file.exists(file.path(other, "f.txt")))
  # A file already there is kept; files written before an error are
  # collected, then the error is raised.
  expect_warning(expect_error(execute_r('writeLines("new", "untouched.txt"); writeLines("e", "early.txt"); stop("late")',
                                        output_dir = out), "late"),
                 class = "securer_file_not_written")
  expect_equal(readLines(file.path(out, "untouched.txt")), "u")
  expect_equal(readLines(file.path(out, "early.txt")), "e")
})
