-- Shared by the scenario scripts: one token pool per wrk thread, loaded from a file.
local common = {}

function common.load(path)
  local items = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if #line > 0 then items[#items + 1] = line end
  end
  file:close()
  return items
end

-- wrk's setup(): numbers the threads 1..N (each thread's `id`), for sharing out work by thread.
local counter = 0
function common.number_thread(thread)
  counter = counter + 1
  thread:set("id", counter)
end

-- Milliseconds on CLOCK_MONOTONIC, for per-step latencies (the scripts' own timing of each request).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } usher_timespec;
int clock_gettime(int clk_id, usher_timespec *tp);
]]
local ts = ffi.new("usher_timespec")
function common.now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

return common
