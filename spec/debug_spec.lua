-- PPE_DEBUG=1: a line on stderr for each worker's start, end (and why),
-- restart, and each failed task, with the time and the pids; nothing
-- without it.
local H = require "helpers"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a Lua program under PPE_DEBUG=value; its stdout and its stderr.
local function run(program, value)
  local out = os.tmpname()
  local err = os.tmpname()
  local f = assert(io.open(out .. ".lua", "w"))
  f:write("package.cpath = ", ("%q"):format(package.cpath), "\n",
          "package.path = ", ("%q"):format(package.path), "\n", program)
  f:close()
  os.execute(("PPE_DEBUG=%s timeout 60 %s %s > %s 2> %s"):format(
    quote(value), H.interpreter(), quote(out .. ".lua"), quote(out),
    quote(err)))
  local o, e = H.read_file(out), H.read_file(err)
  os.remove(out .. ".lua")
  os.remove(out)
  os.remove(err)
  return o, e
end

local PROGRAM = [[
local ppe = require "ppe"
local H = require "helpers"
local ex = ppe.executor { max_workers = 1 }
local first = ex:submit(H.pid):result(30)
local ok, died = pcall(function()
  return ex:submit(function() os.exit(3) end):result(30)
end)
local second = ex:submit(H.pid):result(30)
local ok2, raised = pcall(function()
  return ex:submit(function() error("boom") end):result(30)
end)
ex:close()
print(H.pid(), first, died.pid, second, raised.pid, died.kind, raised.kind)
]]

describe("PPE_DEBUG", function()
  it("logs each worker's start, end and restart, and each failed task, " ..
     "with the pids", function()
    local out, err = run(PROGRAM, "1")
    local me, first, died, second, raised, k1, k2 = out:match(
      "^(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%a+)\t(%a+)\n$")
    assert.is_not_nil(me, out .. err)
    assert.equal(first, died)
    assert.equal(second, raised)
    assert.equal("WorkerDied", k1)
    assert.equal("RemoteError", k2)
    local lines = {}
    for line in err:gmatch("[^\n]+") do
      local pid, text = line:match(
        "^ppe%[(%d+)%] %d%d:%d%d:%d%d%.%d%d%d (.*)$")
      assert.is_not_nil(pid, "not a debug line: " .. line)
      assert.equal(me, pid)
      lines[#lines + 1] = text
    end
    assert.same({
      "executor 1: worker 1 started: pid " .. first,
      "executor 1: worker 1 ended: pid " .. first ..
        " exited with code 3 (the task called os.exit)",
      "executor 1: task 2 failed: WorkerDied (worker pid " .. first .. ")",
      "executor 1: worker 1 restarting (its restart 1)",
      "executor 1: worker 1 started: pid " .. second,
      "executor 1: task 4 failed: RemoteError (worker pid " .. second .. ")",
      "executor 1: worker 1 ended: pid " .. second ..
        " exited with code 0 (its executor closed)",
    }, lines)
  end)

  -- A launcher that stays the worker's parent (sh), so that the two pids
  -- differ: the start names the worker's, which f:pid() gives, and the
  -- launcher's; the end, the launcher's, the one that ends here.
  it("names a far worker's own pid and its launcher's", function()
    local out, err = run([[
local ppe = require "ppe"
local H = require "helpers"
local command = { H.interpreter(), "-e", ("package.cpath = %q; "
  .. "package.path = %q; require('ppe').serve()"):format(package.cpath,
                                                         package.path) }
local ex = ppe.executor { workers = { { n = 1, name = "far",
  launcher = { "sh", "-c", '"$@"; exit 0', "sh" }, command = command } } }
local f = ex:submit(H.pid)
print(f:result(30), (f:pid()))
ex:close()
]], "1")
    local ran, pid = out:match("^(%d+)\t(%d+)\n$")
    assert.is_not_nil(ran, out .. err)
    assert.equal(ran, pid)
    local launcher = err:match("worker 1 of 'far' started: pid " .. ran ..
                               " on its machine %(launcher pid (%d+)%)\n")
    assert.is_not_nil(launcher, err)
    assert.not_equal(ran, launcher)
    assert.matches("worker 1 of 'far' ended: launcher pid " .. launcher ..
                   " exited with code 0 %(its executor closed%)\n", err)
  end)

  for _, value in ipairs { "", "0" } do
    it("says nothing when it is " .. (value == "" and "empty" or "0"),
       function()
      local out, err = run(PROGRAM, value)
      assert.matches("^%d+\t%d+\t%d+\t%d+\t%d+\tWorkerDied\tRemoteError\n$",
                     out)
      assert.equal("", err)
    end)
  end
end)
