-- Better Auth's anonymous sign-in (the peer): a POST from the bench origin, no cookie.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = os.getenv("BENCH_ORIGIN")
