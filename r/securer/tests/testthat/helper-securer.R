# The tests start real containers through securer-runc: as root, with
# SECURER_RUNC naming the binary (make rtest sets it, and SECURER_SERVE_ARGS
# to keep the test's state and cgroups apart).
if (!nzchar(Sys.getenv("SECURER_SOCKET"))) Sys.setenv(SECURER_SOCKET = "/nonexistent/securer.sock")

seed_tools <- function() {
  list(
    securer_tool("add", "Add two numbers",
                 fn = function(a, b) a + b,
                 args = list(a = "numeric", b = "numeric")),
    securer_tool("get_weather", "Get weather for a city",
                 fn = function(city) list(temp = 72, condition = "sunny"),
                 args = list(city = "character"))
  )
}
