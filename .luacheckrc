-- luacheck settings: Lua 5.4; specs, which run on every Lua ppe supports,
-- may name what any version has, and see busted's globals.
std = "lua54"
max_line_length = 100
-- Globals that tasks and initializers set in workers, on purpose.
files["spec/**"] = {
  std = "max+busted",
  globals = { "jobs", "INITS", "WORKER_TAG", "MYTASKS_INIT", "COUNT", "BIG_INIT",
              "KEPT" },
}
files["bench/**"] = { ignore = { "212" } }  -- unused arguments of peers
exclude_files = { "fuzz/corpus*/**" }
-- The LÖVE example runs in LÖVE's LuaJIT, its callbacks set on 'love'.
files["examples/love/**"] = { std = "luajit+love" }
