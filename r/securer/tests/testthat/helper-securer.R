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

# sent_messages(expr) evaluates expr and returns the requests the package
# sent to the server meanwhile (lists).
sent_messages <- function(expr) {
  sent <- list()
  ns <- asNamespace("securer")
  orig <- get(".securer_send", envir = ns)
  rec <- function(link, msg) {
    sent[[length(sent) + 1L]] <<- msg
    orig(link, msg)
  }
  unlockBinding(".securer_send", ns)
  assign(".securer_send", rec, envir = ns)
  on.exit({
    assign(".securer_send", orig, envir = ns)
    lockBinding(".securer_send", ns)
  })
  force(expr)
  sent
}

# New entries in the test server's session and container state dirs.
state_entries <- function() {
  args <- securer:::.securer_serve_args()
  state <- args[which(args == "--state") + 1]
  c(list.files(file.path(state, "sessions"), full.names = TRUE),
    list.files(file.path(state, "containers"), full.names = TRUE))
}
