# The seed document's examples, verbatim, from inside a container.

test_that("execute_r runs code in a container", {
  expect_equal(execute_r("1 + 1"), 2)
  expect_output(print(execute_r("1 + 1")), "^\\[1\\] 2$")
  expect_match(execute_r("paste('Hello from', R.version.string)"), "^Hello from R version ")
  # It ran in the sandbox: its own hostname, its own user namespace.
  expect_equal(execute_r("Sys.info()[['nodename']]"), "sandbox")
  uid_map <- scan(text = execute_r("readLines('/proc/self/uid_map')"), quiet = TRUE)
  # The box's own host uid range: 100000 + k * 65536, 65536 ids.
  expect_equal(uid_map[c(1, 3)], c(0, 65536))
  expect_true(uid_map[2] >= 100000 && (uid_map[2] - 100000) %% 65536 == 0)
})

test_that("the seed's tools print and work", {
  add_tool <- securer_tool(
    name = "add",
    description = "Add two numbers",
    fn = function(a, b) a + b,
    args = list(a = "numeric", b = "numeric")
  )
  expect_output(print(add_tool), "add: Add two numbers \\(2 args\\)")
  tools <- seed_tools()
  expect_equal(execute_r("add(2, 3)", tools = tools), 5)
  expect_output(print(execute_r("add(2, 3)", tools = tools)), "^\\[1\\] 5$")
  w <- execute_r('get_weather("Boston")', tools = tools)
  expect_equal(w, list(temp = 72, condition = "sunny"))
  expect_output(print(w), "\\$temp\\n\\[1\\] 72\\n\\n\\$condition\\n\\[1\\] \"sunny\"")
})
