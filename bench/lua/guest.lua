wrk.method = "POST"
wrk.headers["X-Publishable-Key"] = os.getenv("USHER_PK")
