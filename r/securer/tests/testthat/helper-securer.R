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

# server_sends(code, field) runs code on the server through the package's
# internals and tells whether the result carries field (a path of
# names). Issue 13 tests of fields another part of securer-runc adds
# (printed_bytes, error.traceback, displays, pid) skip, naming the field,
# on a server without it, and run once the server has it.
server_sends <- function(code, field) {
  link <- securer:::.securer_connect(FALSE, TRUE)
  on.exit(securer:::.securer_disconnect(link))
  ev <- securer:::.securer_request(link, list(op = "create_session", tools = list()), "session")
  res <- securer:::.securer_run(link, ev$session, "session", code, 30, list(), NULL, NULL)
  x <- res$result
  for (f in field) x <- x[[f]]
  !is.null(x)
}

skip_without_server_field <- function(code, field) {
  if (!server_sends(code, field)) {
    skip(sprintf("needs the server's result field '%s' (issue 13, not in this server yet)", paste(field, collapse = ".")))
  }
}

# server_takes(member) tells whether the server takes a create_session
# member added in issue 13 (clamp); a server without it refuses it.
server_takes <- function(member) {
  link <- securer:::.securer_connect(FALSE, TRUE)
  on.exit(securer:::.securer_disconnect(link))
  msg <- list(op = "create_session", tools = list())
  msg[[member]] <- TRUE
  tryCatch({
    securer:::.securer_request(link, msg, "session")
    TRUE
  }, error = function(e) if (securer:::.securer_refused_member(e, member)) FALSE else stop(e))
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
