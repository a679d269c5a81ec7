-- GET with optional headers from the environment (JWKS, baseline verify).
local auth = os.getenv("BENCH_AUTH")
if auth and #auth > 0 then wrk.headers["Authorization"] = auth end
