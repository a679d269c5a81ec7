-- The drop scenario: each wrk thread holds one connection (run with -t N -c N) and plays one
-- shopper at a time, step after step: a guest session, queue enter, five status polls, and for
-- one shopper in ten an OTP sign-in carrying the guest token (request the code, read it from
-- the test outbox with the secret key -- a harness step, not a shopper's -- and verify it).
-- Per-step latencies are taken with CLOCK_MONOTONIC around each request.
-- Environment: USHER_PK, USHER_SK, BENCH_QUEUE, BENCH_OTP_EVERY (10), BENCH_OUT.
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local common = require("common")
setup = common.number_thread
local now_ms = common.now_ms

-- Each thread writes "<step> <ms>" per answer, "journey" per completed journey and "error <step>"
-- per failed step to its own file under BENCH_OUT (wrk cannot hand nested tables to done()).
function init(args)
  pk, sk = os.getenv("USHER_PK"), os.getenv("USHER_SK")
  queue = os.getenv("BENCH_QUEUE")
  otp_every = tonumber(os.getenv("BENCH_OTP_EVERY") or "10")
  out = assert(io.open(os.getenv("BENCH_OUT") .. "/drop-" .. id .. ".txt", "w"))
  out:setvbuf("full")
  started = 0
  step, polls, token, email, code, sent = nil, 0, nil, nil, nil, 0
end

local function json_headers(extra, body)
  local h = {["X-Publishable-Key"] = pk}
  if body then h["Content-Type"] = "application/json" end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function request()
  if step == nil then
    started = started + 1
    step, polls, token = "guest", 0, nil
  end
  sent = now_ms()
  if step == "guest" then
    return wrk.format("POST", "/api/v1/auth/guest", json_headers())
  elseif step == "enter" then
    return wrk.format("POST", "/api/v1/queues/" .. queue .. "/enter", json_headers({Authorization = "Bearer " .. token}))
  elseif step == "status" then
    return wrk.format("GET", "/api/v1/queues/" .. queue .. "/status", json_headers({Authorization = "Bearer " .. token}))
  elseif step == "otp request" then
    return wrk.format("POST", "/api/v1/auth/otp/request", json_headers(nil, true), '{"email":"' .. email .. '"}')
  elseif step == "outbox read" then
    return wrk.format("GET", "/api/v1/test/otp-messages?limit=50", {Authorization = "Bearer " .. sk})
  elseif step == "otp verify" then
    return wrk.format("POST", "/api/v1/auth/otp/verify", json_headers({Authorization = "Bearer " .. token}, true),
                      '{"email":"' .. email .. '","code":"' .. code .. '"}')
  end
end

local function record(name, ms)
  out:write(name, " ", string.format("%.3f", ms), "\n")
end

local function fail(name)
  out:write("error ", name, "\n")
  step = nil  -- this shopper gives up; the next one starts
end

local expected = {guest = 201, enter = 200, status = 200, ["otp request"] = 202, ["outbox read"] = 200,
                  ["otp verify"] = 200}

function response(status, headers, body)
  local ms = now_ms() - sent
  local name = step
  if status ~= expected[name] then return fail(name) end
  record(name, ms)
  if name == "guest" then
    token = body:match('"accessToken":"([^"]+)"')
    step = "enter"
  elseif name == "enter" then
    step = "status"
  elseif name == "status" then
    polls = polls + 1
    if polls < 5 then return end
    if started % otp_every == 0 then
      email = "drop-" .. id .. "-" .. started .. "-" .. math.random(1e9) .. "@bench.example"
      step = "otp request"
    else
      out:write("journey\n")
      step = nil
    end
  elseif name == "otp request" then
    step = "outbox read"
  elseif name == "outbox read" then
    local text = body:match('"to":"' .. email:gsub("%p", "%%%0") .. '","body":"([^"]+)"')
    code = text and text:match("(%d%d%d%d%d%d)")
    if code == nil then return fail("outbox read") end
    step = "otp verify"
  elseif name == "otp verify" then
    out:write("journey\n")
    step = nil
  end
end

