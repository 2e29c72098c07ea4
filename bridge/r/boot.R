# Rscript's entry: runs main.R parsed whole (main.R parses the runtime's
# other files the same way). Read by Rscript itself, main.R's one long
# expression would cost ~70 ms at every start (R's file reader parses a
# multi-line expression again at each line).
# local(): the loop variable stays out of the global environment.
local(for (e in parse(file.path(commandArgs(trailingOnly = TRUE)[1], "main.R"), keep.source = FALSE)) eval(e, globalenv()))
