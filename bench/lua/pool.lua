-- Each request takes a fresh item from this thread's share of a file (a refresh token, an
-- "email code" pair, an exchange code); a refresh answer puts its successor at the back.
-- Access tokens (status) are reused round-robin. Environment: BENCH_FILE, BENCH_KIND
-- (refresh | otp | exchange | status | cookie | challenge), BENCH_PATH, BENCH_THREADS, USHER_PK.
package.path = os.getenv("BENCH_LUA") .. "/?.lua;" .. package.path
local common = require("common")
setup = common.number_thread

function init(args)
  local all = common.load(os.getenv("BENCH_FILE"))
  local count = tonumber(os.getenv("BENCH_THREADS"))
  pool, head, tail = {}, 1, 0
  for i = id, #all, count do
    tail = tail + 1
    pool[tail] = all[i]
  end
  kind, pk, path = os.getenv("BENCH_KIND"), os.getenv("USHER_PK"), os.getenv("BENCH_PATH")
  size = tail
end

local function take()
  if kind == "status" or kind == "cookie" then
    local item = pool[head]
    head = head % size + 1
    return item
  end
  if head > tail then return "exhausted" end
  local item = pool[head]
  pool[head] = nil
  head = head + 1
  return item
end

function request()
  local item = take()
  local headers = {["X-Publishable-Key"] = pk, ["Content-Type"] = "application/json"}
  if kind == "refresh" then
    return wrk.format("POST", path, headers, '{"refreshToken":"' .. item .. '"}')
  elseif kind == "otp" then
    local email, code = item:match("([^ ]+) ([^ ]+)")
    return wrk.format("POST", path, headers, '{"email":"' .. email .. '","code":"' .. code .. '"}')
  elseif kind == "exchange" then
    return wrk.format("POST", path, headers, '{"exchangeCode":"' .. item .. '"}')
  elseif kind == "challenge" then  -- a solved bot-defense challenge (bench/botdefense.py)
    return wrk.format("POST", path, {["X-Publishable-Key"] = pk, ["X-Usher-Challenge"] = item})
  end
  if kind == "cookie" then  -- the peer's session cookie (Better Auth get-session)
    return wrk.format("GET", path, {["Cookie"] = item})
  end
  headers["Authorization"] = "Bearer " .. item
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if kind == "refresh" and status == 200 then
    local token = body:match('"refreshToken":%s*"([^"]+)"')
    if token then
      tail = tail + 1
      pool[tail] = token
    end
  end
end
