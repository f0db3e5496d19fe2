from servers import postgres_process, postgres_server, redis_server, tansu_server  # noqa: F401  (fixture re-exports)
