rockspec_format = "3.0"
package = "ppe"
version = "scm-1"
source = {
  url = "git+https://github.com/ppe-lua/ppe.git",
}
description = {
  summary = "A process pool executor for Lua, in C",
  detailed = [[
Python's concurrent.futures.ProcessPoolExecutor for Lua: work runs in
parallel in worker processes forked from the caller, each with its own
fresh Lua state. Functions are sent by name or by value (bytecode and
upvalues), arguments and results by a fast exact wire format; futures,
map, wait, as_completed, callbacks, event-loop integration, and workers
that are replaced when they die.
]],
  homepage = "https://github.com/ppe-lua/ppe",
  issues_url = "https://github.com/ppe-lua/ppe/issues",
  maintainer = "the ppe authors",
  license = "MIT",
  labels = { "concurrency", "multiprocessing", "parallel" },
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.5",
}
build = {
  type = "make",
  build_target = "ppe.so",
  build_variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install-module",
  install_variables = {
    PREFIX = "$(PREFIX)",
    LIBDIR = "$(LIBDIR)",
  },
}
