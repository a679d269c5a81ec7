-- The drop with a long queue: each wrk thread holds one connection (run with -t N -c N) and plays
-- one shopper at a time: a guest session, queue enter (behind the 100,000 already queued), then
-- status polls over a waiting window of BENCH_WINDOW seconds of the shopper's time. The shopper
-- waits what the last answer's `pollAfter` says (BENCH_FIXED_POLL seconds when the answer has
-- none: the revision before it); the wait is counted, not slept, so the run measures how many
-- such windows the server serves per second. Environment: USHER_PK, BENCH_QUEUE, BENCH_WINDOW
-- (300), BENCH_FIXED_POLL (5), BENCH_OUT, BENCH_LUA.
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local common = require("common")
setup = common.number_thread
local now_ms = common.now_ms

function init(args)
  pk, queue = os.getenv("USHER_PK"), os.getenv("BENCH_QUEUE")
  window = tonumber(os.getenv("BENCH_WINDOW") or "300")
  fixed = tonumber(os.getenv("BENCH_FIXED_POLL") or "5")
  out = assert(io.open(os.getenv("BENCH_OUT") .. "/drop-" .. id .. ".txt", "w"))
  out:setvbuf("full")
  step, token, waited, sent = nil, nil, 0, 0
end

local function headers(extra)
  local h = {["X-Publishable-Key"] = pk}
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function request()
  if step == nil then
    step, token, waited = "guest", nil, 0
  end
  sent = now_ms()
  if step == "guest" then
    return wrk.format("POST", "/api/v1/auth/guest", headers())
  elseif step == "enter" then
    return wrk.format("POST", "/api/v1/queues/" .. queue .. "/enter", headers({Authorization = "Bearer " .. token}))
  end
  return wrk.format("GET", "/api/v1/queues/" .. queue .. "/status", headers({Authorization = "Bearer " .. token}))
end

local expected = {guest = 201, enter = 200, status = 200}

function response(status, _headers, body)
  local ms = now_ms() - sent
  local name = step
  if status ~= expected[name] then
    out:write("error ", name, " ", status, "\n")
    step = nil
    return
  end
  out:write(name, " ", string.format("%.3f", ms), "\n")
  if name == "guest" then
    token = body:match('"accessToken":"([^"]+)"')
    step = "enter"
    return
  end
  -- enter and status answer the consumer's state: wait what it says, then poll if the window lasts
  waited = waited + (tonumber(body:match('"pollAfter":(%d+)')) or fixed)
  if waited <= window then
    step = "status"
  else
    out:write("journey\n")
    step = nil
  end
end
